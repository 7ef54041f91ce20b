"""Unit scorecards: the rates the plans and Beijing's 三率 judge units by, computed from ticket histories.

| ratio | Chinese | numerator / denominator (per unit, over its dispatch cycles) |
|---|---|---|
| response | 响应率 | acknowledged (or resolved) by the acknowledge deadline / cycles acknowledged or whose deadline passed (a cycle returned before it is not judged) |
| resolution | 解决率 | resolved / cycles resolved or past their resolve deadline (a cycle returned before its deadline is not judged) |
| satisfaction | 满意率 | satisfied callbacks / callbacks |
| on_time | 按时办结率 | resolved by the deadline in force / resolved |
| return | 回退率 | returns (退单) / dispatches |
| rehandle | 重办率 | reopened (an unsatisfied callback, or the desk's 复核重办 of a closed ticket) / resolved |

``compute`` walks ticket states: the reference, and what the replay uses. The SLA worker instead stores each
ticket's ``unit_facts`` when it saves the ticket (one row per cycle, return, callback and open ticket, plus the
periods in which a cycle's resolution is judged or an open ticket is overdue) and counts them in SQL at any
``now`` by comparisons only; ``tally`` is that count in Python, and equals ``compute`` (tested).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Literal

from services.domain.tickets import OPEN_FOR_UNIT, Cycle, Span, Status, TicketState

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


def in_window(tickets: Iterable[TicketState], now: datetime, window_days: int) -> Iterator[TicketState]:
    """The tickets a scorecard at ``now`` covers: those opened in the ``window_days`` before it, and every ticket
    still open for a unit (the SLA store's ``UNIT_SCORES`` reads the same from the stored facts). Lazily: a
    replay's packed states are unpacked one at a time."""
    since = now - timedelta(days=window_days)
    return (t for t in tickets if t.opened_at >= since or t.status in OPEN_FOR_UNIT)


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
            ended_early = _ended_early(cycle)
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
            elif t.action in _DESK_VERDICTS:
                holder = _holder(ticket, t.at)
                if holder is not None:
                    s = score(ticket.jurisdiction, holder)
                    if t.action == "callback":
                        s.callbacks += 1
                        s.satisfied += t.to_status is Status.closed
                    s.reopened += t.to_status is Status.reopened
        if ticket.status in OPEN_FOR_UNIT and ticket.unit and ticket.cycle is not None:
            s = score(ticket.jurisdiction, ticket.unit)
            s.open += 1
            s.overdue += ticket.cycle.resolve_due_at(now) < now
    return sorted(scores.values(), key=lambda s: (s.jurisdiction, s.unit))


# the desk's verdicts on a unit's work: the callback (回访), and reopening a closed ticket (复核重办)
_DESK_VERDICTS = frozenset({"callback", "reopen"})


def _holder(ticket: TicketState, moment: datetime) -> str | None:
    """The unit whose cycle was running (or had just resolved) at ``moment``."""
    holder = None
    for cycle in ticket.cycles:
        if cycle.start <= moment:
            holder = cycle.unit
    return holder


# --- facts stored per ticket, counted at any instant -------------------------------------------------------------

FactKind = Literal["cycle", "return", "callback", "reopen", "open", "resolve_judged", "overdue"]
_MICROSECOND = timedelta(microseconds=1)  # the resolution of datetime and of PostgreSQL's timestamptz


@dataclass(frozen=True)
class UnitFact:
    """One row of a ticket's scorecard facts for (jurisdiction, unit). It counts at ``now`` when ``at <= now``
    (``at`` None: at any time) and, for the periods ``resolve_judged`` and ``overdue``, ``now < until`` (None:
    for good). A cycle row's ``*_from`` fields count once they are ``<= now``."""

    kind: FactKind
    jurisdiction: str
    unit: str
    at: datetime | None
    until: datetime | None = None
    dispatch: bool = False
    ack_judged_from: datetime | None = None
    ack_in_time_from: datetime | None = None
    resolved_from: datetime | None = None
    on_time_from: datetime | None = None
    satisfied: bool = False
    reopened: bool = False


def unit_facts(ticket: TicketState) -> list[UnitFact]:
    """Everything ``compute`` needs of this ticket, in a form that depends on ``now`` only by comparisons."""
    j = ticket.jurisdiction
    facts: list[UnitFact] = []
    for cycle in ticket.cycles:
        facts.append(_cycle_fact(j, cycle))
        facts.extend(UnitFact("resolve_judged", j, cycle.unit, start, end) for start, end in _resolve_judged(cycle))
    for t in ticket.transitions:
        if t.unit is None:
            continue
        if t.action == "return":
            facts.append(UnitFact("return", j, t.unit, t.at))
        elif t.action in _DESK_VERDICTS:
            holder = _holder(ticket, t.at)
            if holder is not None:
                kind: FactKind = "callback" if t.action == "callback" else "reopen"
                facts.append(UnitFact(kind, j, holder, t.at, satisfied=t.to_status is Status.closed,
                                      reopened=t.to_status is Status.reopened))
    if ticket.status in OPEN_FOR_UNIT and ticket.unit and ticket.cycle is not None:
        facts.append(UnitFact("open", j, ticket.unit, None))
        facts.extend(UnitFact("overdue", j, ticket.unit, start, end) for start, end in _overdue(ticket.cycle))
    return facts


def _cycle_fact(jurisdiction: str, cycle: Cycle) -> UnitFact:
    """The cycle counts from its start. Acknowledgement: judged once acknowledged (or resolved) or once the
    deadline passed unless the cycle ended early before it; in time when that first answer met the deadline."""
    ack_judged_from = ack_in_time_from = None
    if cycle.ack_due is not None:
        first = min((m for m in (cycle.acked_at, cycle.resolved_at) if m is not None), default=None)
        void = _ended_early(cycle) and cycle.ended_at is not None and cycle.ended_at <= cycle.ack_due
        ack_judged_from = min((m for m in (first, None if void else cycle.ack_due) if m is not None), default=None)
        ack_in_time_from = first if first is not None and first <= cycle.ack_due else None
    resolved = cycle.resolved_at
    on_time = resolved if resolved is not None and resolved <= cycle.resolve_due_at(resolved) else None
    return UnitFact("cycle", jurisdiction, cycle.unit, cycle.start, dispatch=cycle.kind == "dispatch",
                    ack_judged_from=ack_judged_from, ack_in_time_from=ack_in_time_from, resolved_from=resolved,
                    on_time_from=on_time)


def _ended_early(cycle: Cycle) -> bool:
    return cycle.ended_at is not None and cycle.resolved_at is None  # returned or superseded


def _due_pieces(cycle: Cycle) -> list[tuple[datetime | None, datetime | None, datetime]]:
    """``resolve_due_at`` as a step function: (from, until, due) pieces (from None: since ever)."""
    bounds = sorted({s.effective_from for s in cycle.due})
    pieces: list[tuple[datetime | None, datetime | None, datetime]] = [
        (None, bounds[0] if bounds else None, cycle.due[0].due)]
    for i, bound in enumerate(bounds):
        pieces.append((bound, bounds[i + 1] if i + 1 < len(bounds) else None, cycle.resolve_due_at(bound)))
    return pieces


def _resolve_judged(cycle: Cycle) -> list[Span]:
    """When the cycle counts in the resolution ratio's denominator: once resolved, or while the deadline in
    force has passed (unless the cycle ended early before that deadline); never before the cycle started."""
    spans: list[Span] = [(cycle.resolved_at, None)] if cycle.resolved_at is not None else []
    for start, end, due in _due_pieces(cycle):
        if _ended_early(cycle) and cycle.ended_at is not None and cycle.ended_at <= due:
            continue
        spans.append((due if start is None else max(start, due), end))
    return _clip(_union(spans), cycle.start)


def _overdue(cycle: Cycle) -> list[Span]:
    """When the deadline in force lies before ``now`` (strictly: from one microsecond after it)."""
    spans: list[Span] = []
    for start, end, due in _due_pieces(cycle):
        late = due + _MICROSECOND
        spans.append((late if start is None else max(start, late), end))
    return _union(spans)


def _union(spans: list[Span]) -> list[Span]:
    """Disjoint, sorted intervals covering the same instants (empty ones dropped, touching ones joined)."""
    out: list[Span] = []
    for start, end in sorted((s for s in spans if s[1] is None or s[0] < s[1]), key=lambda s: s[0]):
        if out and (out[-1][1] is None or start <= out[-1][1]):
            last_start, last_end = out[-1]
            out[-1] = (last_start, None if last_end is None or end is None else max(last_end, end))
        else:
            out.append((start, end))
    return out


def _clip(spans: list[Span], lower: datetime) -> list[Span]:
    return [(max(start, lower), end) for start, end in spans if end is None or end > lower]


def tally(facts: Iterable[UnitFact], now: datetime) -> list[UnitScore]:
    """The scorecards at ``now`` from stored facts: what the SLA store's SQL computes, in Python."""
    scores: dict[tuple[str, str], UnitScore] = {}
    for f in facts:
        if f.at is not None and f.at > now:
            continue
        s = scores.setdefault((f.jurisdiction, f.unit), UnitScore(f.jurisdiction, f.unit))
        running = f.until is None or now < f.until
        if f.kind == "cycle":
            s.dispatches += f.dispatch
            s.ack_judged += _by(f.ack_judged_from, now)
            s.ack_in_time += _by(f.ack_in_time_from, now)
            s.resolved += _by(f.resolved_from, now)
            s.resolved_on_time += _by(f.on_time_from, now)
        elif f.kind == "resolve_judged":
            s.resolve_judged += running
        elif f.kind == "return":
            s.returns += 1
        elif f.kind in _DESK_VERDICTS:
            s.callbacks += f.kind == "callback"
            s.satisfied += f.satisfied
            s.reopened += f.reopened
        elif f.kind == "open":
            s.open += 1
        elif f.kind == "overdue":
            s.overdue += running
    return sorted(scores.values(), key=lambda s: (s.jurisdiction, s.unit))


def _by(moment: datetime | None, now: datetime) -> bool:
    return moment is not None and moment <= now
