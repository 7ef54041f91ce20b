"""Unit scorecards: the rates the plans and Beijing's 三率 judge units by, computed from ticket histories.

| ratio | Chinese | numerator / denominator (per unit, over its dispatch cycles) |
|---|---|---|
| response | 响应率 | acknowledged (or resolved) by the acknowledge deadline / cycles acknowledged or whose deadline passed (a cycle returned before it is not judged) |
| resolution | 解决率 | resolved / cycles resolved or past their resolve deadline (a cycle returned before its deadline is not judged) |
| satisfaction | 满意率 | satisfied callbacks / callbacks |
| on_time | 按时办结率 | resolved by the deadline in force / resolved |
| return | 回退率 | returns (退单) / dispatches |
| rehandle | 重办率 | reopened after an unsatisfied callback / resolved |
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime

from services.domain.tickets import OPEN_FOR_UNIT, Status, TicketState

RATIOS = ("response", "resolution", "satisfaction", "on_time", "return", "rehandle")


@dataclass
class UnitScore:
    jurisdiction: str
    unit: str
    dispatches: int = 0
    ack_judged: int = 0
    ack_in_time: int = 0
    resolve_judged: int = 0
    resolved: int = 0
    resolved_on_time: int = 0
    callbacks: int = 0
    satisfied: int = 0
    returns: int = 0
    reopened: int = 0
    open: int = 0
    overdue: int = 0

    def ratio(self, name: str) -> float | None:
        num, den = {
            "response": (self.ack_in_time, self.ack_judged),
            "resolution": (self.resolved, self.resolve_judged),
            "satisfaction": (self.satisfied, self.callbacks),
            "on_time": (self.resolved_on_time, self.resolved),
            "return": (self.returns, self.dispatches),
            "rehandle": (self.reopened, self.resolved),
        }[name]
        return round(num / den, 6) if den else None

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), **{f"{r}_ratio": self.ratio(r) for r in RATIOS}}


def compute(tickets: Iterable[TicketState], now: datetime) -> list[UnitScore]:
    scores: dict[tuple[str, str], UnitScore] = {}

    def score(jurisdiction: str, unit: str) -> UnitScore:
        return scores.setdefault((jurisdiction, unit), UnitScore(jurisdiction, unit))

    for ticket in tickets:
        for cycle in ticket.cycles:
            if cycle.start > now:
                continue
            s = score(ticket.jurisdiction, cycle.unit)
            if cycle.kind == "dispatch":
                s.dispatches += 1
            ended_early = cycle.ended_at is not None and cycle.resolved_at is None  # returned or superseded
            if cycle.ack_due is not None:
                done = min((m for m in (cycle.acked_at, cycle.resolved_at) if m is not None and m <= now), default=None)
                if done is not None or (cycle.ack_due <= now and not (ended_early and cycle.ended_at <= cycle.ack_due)):
                    s.ack_judged += 1
                    s.ack_in_time += done is not None and done <= cycle.ack_due
            resolved_at = cycle.resolved_at if cycle.resolved_at is not None and cycle.resolved_at <= now else None
            if resolved_at is not None:
                s.resolved += 1
                s.resolved_on_time += resolved_at <= cycle.resolve_due_at(resolved_at)
            due = cycle.resolve_due_at(now)
            if resolved_at is not None or (due <= now and not (ended_early and cycle.ended_at <= due)):
                s.resolve_judged += 1
        for t in ticket.transitions:
            if t.at > now or t.unit is None:
                continue
            if t.action == "return":
                score(ticket.jurisdiction, t.unit).returns += 1
            elif t.action == "callback":
                holder = _holder(ticket, t.at)
                if holder is not None:
                    s = score(ticket.jurisdiction, holder)
                    s.callbacks += 1
                    s.satisfied += t.to_status is Status.closed
                    s.reopened += t.to_status is Status.reopened
        if ticket.status in OPEN_FOR_UNIT and ticket.unit and ticket.cycle is not None:
            s = score(ticket.jurisdiction, ticket.unit)
            s.open += 1
            s.overdue += ticket.cycle.resolve_due_at(now) < now
    return sorted(scores.values(), key=lambda s: (s.jurisdiction, s.unit))


def _holder(ticket: TicketState, moment: datetime) -> str | None:
    """The unit whose cycle was running (or had just resolved) at ``moment``."""
    holder = None
    for cycle in ticket.cycles:
        if cycle.start <= moment:
            holder = cycle.unit
    return holder
