"""Work orders: a dispatch of a ticket to a unit."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.common import SCHEMA_VERSION, Contract, Jurisdiction, Source, Urgency
from schemas.intake import Caller
from schemas.routing import RoutingDecision


class Role(StrEnum):
    lead = "lead"  # 牵头 / 主办
    cooperating = "cooperating"  # 配合 / 协办
    territorial = "territorial"  # 属地 街镇


class WorkOrder(Contract):
    """One dispatch of a ticket. ``work_order_id`` is ``{ticket_id}#{dispatch_seq}``: a re-dispatch after a
    return is a new work order of the same ticket."""

    schema_version: Literal[1] = SCHEMA_VERSION
    work_order_id: str
    ticket_id: str = Field(description="event_id of the intake event that opened the ticket")
    dispatch_seq: int = Field(ge=1)
    jurisdiction: Jurisdiction
    source: Source
    category: str
    urgency: Urgency
    lead_unit: str
    cooperating_units: list[str] = Field(default_factory=list)
    territorial_unit: str | None = None
    previous_units: list[str] = Field(default_factory=list, description="units that returned this ticket")
    content: str
    address: str
    caller: Caller | None = Field(default=None, description="for the unit's callback only")
    campaigns: list[str] = Field(default_factory=list)
    opened_at: AwareDatetime = Field(description="occurred_at of the intake event")
    dispatched_at: AwareDatetime
    decision: RoutingDecision
