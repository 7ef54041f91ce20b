"""Routing decisions: who owns a matter, and why."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from schemas.common import Citation, Contract, Jurisdiction, Urgency


class Outcome(StrEnum):
    dispatch = "dispatch"  # a work order goes to the lead unit
    triage = "triage"  # a human dispatcher (城运中心) decides
    redirect = "redirect"  # an emergency in progress: 110 / 119 / 120, recorded, no work order
    close = "close"  # the dispatch desk closed a triaged matter without a work order (a Ruling)


class Candidate(Contract):
    rule_id: str
    category: str
    lead_unit: str
    score: float
    matched_terms: list[str] = Field(default_factory=list)
    citation: Citation


class RoutingDecision(Contract):
    event_id: str
    jurisdiction: Jurisdiction
    outcome: Outcome
    category: str | None = None
    lead_unit: str | None = None
    cooperating_units: list[str] = Field(default_factory=list)
    territorial_unit: str | None = None
    confidence: float = Field(ge=0, le=1)
    needs_triage: bool
    triage_reason: str | None = None
    redirect_to: str | None = Field(default=None, description="110, 119 or 120 for emergencies in progress")
    rule_id: str | None = None
    matched_terms: list[str] = Field(default_factory=list)
    runner_up: Candidate | None = None
    candidates: list[Candidate] = Field(default_factory=list)
    citations: list[Citation] = Field(default_factory=list)
    urgency: Urgency | None = Field(default=None, description=(
        "urgent when the report's words show a risk to life or property in progress that the sender did not mark "
        "urgent (the rulebooks' urgent screen: 电梯困人, a missing manhole cover, …); the work order and triage item "
        "then carry it. None: the sender's urgency stands"))
    urgent_terms: list[str] = Field(default_factory=list, description="the words that made it urgent")
    explanation: str
    rulebook_version: str = Field(description="Content hash of the rulebook that decided")
