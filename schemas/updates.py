"""Unit updates: what a unit posts back about its work order."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from schemas.common import SCHEMA_VERSION, Contract, EventTime

# The furthest an extension (延期) may move a deadline, counted from when it is requested: far beyond any time limit
# in the plans (a petition's 60 days plus 30), and a bound on the working-day arithmetic an update can ask for.
MAX_EXTENSION = timedelta(days=366)


class UnitAction(StrEnum):
    acknowledge = "acknowledge"  # 签收
    return_ = "return"  # 退单
    resolve = "resolve"  # 办结
    extend = "extend"  # 延期: the unit asks for a later deadline
    review_extension = "review_extension"  # 延期审核: the dispatch desk approves or refuses the pending request
    callback = "callback"  # 回访
    reopen = "reopen"  # 复核重办: the dispatch desk reopens a ticket closed after a satisfied callback, for its unit


class UnitUpdate(Contract):
    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")
    ticket_id: str = Field(min_length=1, max_length=64)
    action: UnitAction
    unit: str = Field(min_length=1, max_length=64,
                      description="who posts it: the unit holding the ticket; for callback, review_extension and "
                                  "reopen, the jurisdiction's dispatch desk (its rulebook's triage_unit, e.g. 区城运中心)")
    occurred_at: EventTime
    reason: str | None = Field(default=None, max_length=1000)
    note: str | None = Field(default=None, max_length=2000)
    new_due: EventTime | None = None
    satisfied: bool | None = None
    approved: bool | None = Field(default=None, description="review_extension: whether the desk grants the 延期")
    extension_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$",
                                     description="review_extension: the event_id of the unit's extend (延期) this "
                                                 "review decides; without it, the request waiting for review")

    @model_validator(mode="after")
    def _fields_for_action(self) -> UnitUpdate:
        if self.action is UnitAction.return_ and not self.reason:
            raise ValueError("reason: a return (退单) must give a reason")
        if self.action is UnitAction.extend and self.new_due is None:
            raise ValueError("new_due: an extension (延期) must give the new due time")
        if self.new_due is not None and self.new_due - self.occurred_at > MAX_EXTENSION:
            raise ValueError(f"new_due: an extension (延期) reaches at most {MAX_EXTENSION.days} days past occurred_at")
        if self.extension_id is not None and self.action is not UnitAction.review_extension:
            raise ValueError("extension_id: only a review of an extension (review_extension) names one")
        if self.action is UnitAction.review_extension and self.approved is None:
            raise ValueError("approved: a review of an extension (延期审核) must say whether it is granted")
        if self.action is UnitAction.reopen and not self.reason:
            raise ValueError("reason: reopening a closed ticket (复核重办) must give a reason")
        if self.action is UnitAction.callback and self.satisfied is None:
            raise ValueError("satisfied: a callback (回访) must say whether the citizen is satisfied")
        return self
