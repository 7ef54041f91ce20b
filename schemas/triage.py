"""Triage items: matters the router did not dispatch — the human dispatch desk's queue and redirect records."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.common import SCHEMA_VERSION, Contract, Jurisdiction, Source, Urgency
from schemas.routing import RoutingDecision


class TriageItem(Contract):
    """A decision with outcome ``triage`` (for the 城运中心 dispatcher, with candidates), ``redirect``
    (recorded hand-over to 110 / 119 / 120) or ``close`` (the dispatcher closed the matter without a work order,
    by a ``Ruling``). No caller data: that reaches only a unit's work order."""

    schema_version: Literal[1] = SCHEMA_VERSION
    ticket_id: str
    jurisdiction: Jurisdiction
    source: Source
    urgency: Urgency
    campaigns: list[str] = Field(default_factory=list)
    opened_at: AwareDatetime
    content: str
    address: str
    queue: str = Field(description="the unit that handles the queue, e.g. 区城运中心")
    decision: RoutingDecision
    decided_at: AwareDatetime | None = Field(default=None, description="when the dispatch desk ruled (outcome close)")
