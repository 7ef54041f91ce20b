"""Rulings: what the dispatch desk (城运中心) decides about a ticket in its triage queue."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from schemas.common import SCHEMA_VERSION, Contract, EventTime


class RulingAction(StrEnum):
    dispatch = "dispatch"  # 人工派单 / 裁定: a work order to the units of the rule the desk applies
    close = "close"  # 不派单: answered by the desk, or the caller told the proper channel (courts, 110, …)


class Ruling(Contract):
    """The desk's decision on a ticket waiting in its queue: a matter the rules could not place, or an ownership
    dispute (退单 twice). The router checks it against the ticket and the rulebook and dispatches or closes."""

    schema_version: Literal[1] = SCHEMA_VERSION
    ruling_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$",
                           description="the desk's id of this ruling; a ruling sent twice is applied once")
    ticket_id: str = Field(min_length=1, max_length=64)
    desk: str = Field(min_length=1, max_length=64,
                      description="the unit whose queue holds the ticket: the jurisdiction's triage unit")
    action: RulingAction
    occurred_at: EventTime
    rule_id: str | None = Field(default=None, max_length=128,
                                description="dispatch: the rulebook rule the desk applies; its category, lead, "
                                            "cooperating units and plan citation make the work order")
    lead_unit: str | None = Field(default=None, max_length=64,
                                  description="dispatch: a lead other than the rule's (a unit or 街镇 of the "
                                              "jurisdiction), e.g. a territorial rule for an address without a 街镇")
    reason: str = Field(min_length=1, max_length=1000, description="why (裁定理由); goes into the decision's explanation")

    @model_validator(mode="after")
    def _fields_for_action(self) -> Ruling:
        if self.action is RulingAction.dispatch and not self.rule_id:
            raise ValueError("rule_id: a dispatch ruling must name the rule it applies")
        if self.action is RulingAction.close and (self.rule_id or self.lead_unit):
            raise ValueError("rule_id: a close ruling dispatches nothing, so it names no rule or lead_unit")
        return self
