"""Escalations (督办): warnings and breaches, published once each."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, Field

from schemas.common import SCHEMA_VERSION, Contract, Jurisdiction


class EscalationKind(StrEnum):
    resolve_warning = "resolve_warning"
    ack_overdue = "ack_overdue"
    resolve_overdue = "resolve_overdue"
    triage_overdue = "triage_overdue"  # the dispatch desk has not dispatched or closed a ticket in triage in time
    repeat_after_close = "repeat_after_close"  # the same matter reported again after its ticket was closed
    extension_review_overdue = "extension_review_overdue"  # the dispatch desk has not reviewed a unit's 延期 in time
    ownership_dispute = "ownership_dispute"
    campaign_at_risk = "campaign_at_risk"
    campaign_missed = "campaign_missed"


class Escalation(Contract):
    schema_version: Literal[1] = SCHEMA_VERSION
    escalation_id: str = Field(description="deterministic: the same breach always gets the same id")
    kind: EscalationKind
    jurisdiction: Jurisdiction | None = None
    ticket_id: str | None = None
    campaign_id: str | None = None
    unit: str | None = None
    level: int = Field(ge=1, le=3, description="1 the unit, 2 the operations centre / district, 3 leadership")
    threshold: float | None = Field(default=None, description="share of the resolve time, for warnings")
    at: AwareDatetime = Field(description="when the condition became true, in event time")
    details: dict[str, Any] = Field(default_factory=dict)
