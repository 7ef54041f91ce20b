"""The state the SLA service keeps per ticket: its dispatch cycles, transitions and emitted escalations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Status(StrEnum):
    triage = "triage"  # waiting for a human dispatcher
    redirected = "redirected"  # handed to 110 / 119 / 120, no work order
    dispatched = "dispatched"  # 派单
    acknowledged = "acknowledged"  # 签收
    returned = "returned"  # 退单, waiting for the router to re-dispatch
    resolved = "resolved"  # 办结, waiting for the callback
    reopened = "reopened"  # 重办: callback unsatisfied, or the desk reopened the closed ticket (复核重办)
    closed = "closed"  # callback satisfied: archived


OPEN_FOR_UNIT = frozenset({Status.dispatched, Status.acknowledged, Status.reopened})
# the triage reason of a redirect the dispatch desk reviews (the report also names a civic matter a unit would own
# with confidence): the redirect stands, and the desk's clock runs until it dispatches or closes the ticket
REDIRECT_REVIEW = "redirect_review"
# The steps after which a pending 延期 has nothing left to extend (it lapses, unless the desk reviewed it first): the
# unit's 办结 or 退单, a re-dispatch, triage or the desk's close
LAPSES_EXTENSION = frozenset({"resolve", "return", "dispatch", "triage", "close"})


class State(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DueSegment(State):
    """From ``effective_from`` on, the resolve deadline is ``due`` (an extension adds a segment)."""

    effective_from: datetime
    due: datetime


class ExtensionRequest(State):
    """A unit's 延期 waiting for the dispatch desk's review (延期审核); the deadline is unchanged until granted."""

    update_id: str
    requested_at: datetime
    new_due: datetime


class Cycle(State):
    """One stretch of work by one unit: a dispatch, or a re-handling (after an unsatisfied callback, or the desk's
    reopening of a closed ticket)."""

    index: int
    kind: Literal["dispatch", "reopen"]
    dispatch_seq: int
    unit: str
    start: datetime
    ack_due: datetime | None
    due: list[DueSegment]
    acked_at: datetime | None = None
    resolved_at: datetime | None = None
    ended_at: datetime | None = None  # returned or superseded
    extension_request: ExtensionRequest | None = None  # a 延期 not reviewed yet

    def resolve_due_at(self, moment: datetime) -> datetime:
        """The resolve deadline in force at ``moment``."""
        current = self.due[0].due
        for segment in self.due:
            if segment.effective_from <= moment:
                current = segment.due
        return current

    @property
    def final_due(self) -> datetime:
        return self.due[-1].due


class Transition(State):
    seq: int
    update_id: str
    action: str
    from_status: Status | None
    to_status: Status
    unit: str | None
    at: datetime
    reason: str | None = None
    note: str | None = None
    extension_id: str | None = None  # review_extension: the request (its extend's update id) the review answered


class TicketState(State):
    ticket_id: str
    jurisdiction: str
    source: str
    category: str | None
    urgency: str
    campaigns: list[str] = Field(default_factory=list)
    opened_at: datetime
    status: Status
    unit: str | None = None
    dispatch_seq: int = 0
    first_dispatched_at: datetime | None = None
    policy: str | None = None
    cycles: list[Cycle] = Field(default_factory=list)
    transitions: list[Transition] = Field(default_factory=list)
    applied_updates: list[str] = Field(default_factory=list)
    emitted: list[str] = Field(default_factory=list)
    returns: int = 0
    reopens: int = 0
    repeats: int = 0  # repeat reports merged into this ticket (并单)
    priority: Literal["normal", "high"] = "normal"

    @property
    def cycle(self) -> Cycle | None:
        return self.cycles[-1] if self.cycles else None

    def resolved_as_of(self, moment: datetime) -> bool:
        """Resolved (办结) at ``moment`` and not reopened since — the campaigns' 化解 test."""
        resolved = False
        for transition in self.transitions:
            if transition.at > moment:
                break
            resolved = _resolved_after(resolved, transition)
        return resolved

    def resolved_spans(self) -> list[Span]:
        """The periods in which ``resolved_as_of`` holds, as half-open intervals ``[start, end)`` (end None: for
        good). ``resolved_as_of(m)`` is True exactly when ``start <= m < end`` for one of them.

        ``resolved_as_of`` reads the transitions up to the first one after ``m``; so transition i counts from the
        latest time among transitions 0..i on (the running maximum), which is its own time when the history is in
        time order, as the lifecycle keeps it."""
        steps: list[tuple[datetime, bool]] = []  # (from, value) with strictly increasing times
        resolved = False
        latest: datetime | None = None
        for transition in self.transitions:
            latest = transition.at if latest is None or transition.at > latest else latest
            resolved = _resolved_after(resolved, transition)
            if steps and steps[-1][0] == latest:
                steps[-1] = (latest, resolved)
            else:
                steps.append((latest, resolved))
        return spans_of(steps)


@dataclass(slots=True)
class ExtensionRecord:
    """One 延期 request of a ticket's history: the unit's ``asked``; the step that ``settled`` it (the desk's review
    of it, or what made it lapse first: the unit's 办结 or 退单, a re-dispatch, triage, the desk's close); and the
    desk's review that ``answered`` it (deciding it, or recording it as moot after it lapsed), if any."""

    asked: Transition
    settled: Transition | None = None
    answered: Transition | None = None

    @property
    def lapsed(self) -> bool:
        """Settled by something other than the desk's review, which has not answered it yet."""
        return self.settled is not None and self.answered is None


def extension_records(state: TicketState) -> list[ExtensionRecord]:
    """The ticket's extension requests in event-time order, each with what settled and answered it. A review
    answers the request it names (``extension_id``); one stored without a name (before reviews named their
    request) answered the latest request."""
    records: dict[str, ExtensionRecord] = {}
    latest: ExtensionRecord | None = None
    for t in state.transitions:
        if t.action == "extend":
            latest = records[t.update_id] = ExtensionRecord(t)
        elif t.action == "review_extension":
            record = records.get(t.extension_id) if t.extension_id is not None else latest
            if record is not None and record.answered is None:
                record.answered = t
                record.settled = record.settled or t
        elif latest is not None and latest.settled is None and t.action in LAPSES_EXTENSION:
            latest.settled = t
    return list(records.values())


_UNRESOLVES = frozenset({Status.reopened, Status.returned, Status.dispatched})


def _resolved_after(resolved: bool, transition: Transition) -> bool:
    """Whether the ticket counts as resolved after ``transition``, given whether it did before: 办结, or the callback
    that archives it, resolves it; a reopening, a return or a (re-)dispatch undoes that; any other step leaves it.
    The dispatch desk's close of a triaged ticket resolves nothing: the ticket ends without a work order (answered
    on the line, or the caller told the proper channel)."""
    status = transition.to_status
    if status is Status.resolved or (status is Status.closed and transition.action != "close"):
        return True
    return False if status in _UNRESOLVES else resolved


Span = tuple[datetime, datetime | None]


def spans_of(steps: list[tuple[datetime, bool]]) -> list[Span]:
    """A step function (False before the first step; each step holds from its time on) as its True intervals."""
    spans: list[Span] = []
    start: datetime | None = None
    for at, value in steps:
        if value and start is None:
            start = at
        elif not value and start is not None:
            spans.append((start, at))
            start = None
    if start is not None:
        spans.append((start, None))
    return spans
