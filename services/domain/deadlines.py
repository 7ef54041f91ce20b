"""Which escalations a ticket's history calls for, and when.

``scheduled`` lists every escalation the ticket would get if nothing else happened: warnings at 50 % /
75 % of the resolve time, ``ack_overdue`` and ``resolve_overdue`` at the deadline and higher levels after
the policy's grace periods. Each is judged on the ticket's event-time history alone, so the answer does
not depend on when the question is asked: the streaming worker (wall clock) and the replay (event time)
emit the same escalations with the same deterministic ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache

from schemas import Escalation, EscalationKind
from services.domain.clock import WorkCalendar
from services.domain.policies import Limit, Policy
from services.domain.tickets import Cycle, TicketState

LEVEL_AUDIENCE = {1: "responsible unit", 2: "city operations centre / district", 3: "leadership"}


def escalation_id(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]


@lru_cache(maxsize=1 << 17, typed=True)
def _ticket_escalation_id(kind: str, ticket_id: str, cycle: int, level: int, threshold: float | None) -> str:
    """``escalation_id`` of one planned ticket escalation. A ticket is re-planned after every change and
    every sweep, and each plan is compared with the ids already emitted, so the same ids are asked for
    many times; the hash depends only on these arguments."""
    return escalation_id(kind, ticket_id, cycle, level, threshold)


def _first_crossing(cycle: Cycle, instant_for_due) -> datetime | None:  # type: ignore[no-untyped-def]
    """First moment the deadline in force is crossed, over the cycle's due segments."""
    segments = cycle.due
    for i, segment in enumerate(segments):
        until = segments[i + 1].effective_from if i + 1 < len(segments) else None
        candidate = max(segment.effective_from, instant_for_due(segment.due))
        if until is None or candidate < until:
            return candidate
    return None


def _end(cycle: Cycle, *moments: datetime | None) -> datetime | None:
    known = [m for m in (*moments, cycle.ended_at) if m is not None]
    return min(known) if known else None


@dataclass(frozen=True, slots=True)
class Planned:
    """An escalation the history calls for, before it is built into the wire contract."""

    at: datetime
    escalation_id: str
    kind: EscalationKind
    level: int
    threshold: float | None
    cycle: Cycle
    deadline: datetime


def _plan(state: TicketState, cycle: Cycle, kind: EscalationKind, level: int, at: datetime, deadline: datetime,
          threshold: float | None = None) -> Planned:
    return Planned(at, _ticket_escalation_id(kind.value, state.ticket_id, cycle.index, level, threshold), kind,
                   level, threshold, cycle, deadline)


def _build(state: TicketState, p: Planned, policy: Policy) -> Escalation:
    c = p.cycle
    return Escalation(
        escalation_id=p.escalation_id, kind=p.kind, jurisdiction=state.jurisdiction, ticket_id=state.ticket_id,
        unit=c.unit, level=p.level, threshold=p.threshold, at=p.at,
        details={"cycle": c.index, "cycle_kind": c.kind, "dispatch_seq": c.dispatch_seq,
                 "deadline": p.deadline.isoformat(), "policy": policy.name, "policy_citation": policy.citation,
                 "audience": LEVEL_AUDIENCE[p.level]},
    )


def _levels(state: TicketState, cycle: Cycle, kind: EscalationKind, breach: datetime, done: datetime | None,
            delays: tuple[Limit, ...], calendar: WorkCalendar) -> list[Planned]:
    out = []
    for level, delay in enumerate(delays[:3], start=1):
        at = delay.after(breach, calendar)
        if done is None or at < done:
            out.append(_plan(state, cycle, kind, level, at, breach))
    return out


# ``scheduled`` by its inputs (see ``_plan_key``): a ticket is re-planned after every change and at every
# sweep, mostly with the same cycles. Each entry keeps the policy and calendar it was computed with, so their
# ids in the key cannot be reused while it exists. Bounded, cleared when full.
_PLANS: dict[tuple[object, ...], tuple[Policy, WorkCalendar, tuple[Planned, ...]]] = {}
_PLANS_MAX = 1 << 16


def _plan_key(state: TicketState, policy: Policy, calendar: WorkCalendar) -> tuple[object, ...]:
    """Everything ``scheduled`` reads: the ticket id, the policy and calendar (by identity), every field of every
    cycle, and the time zones of the datetimes whose zone the planned instants and deadlines take (instants in
    different zones compare and hash equal, but print differently)."""
    key: list[object] = [state.ticket_id, id(policy), id(calendar)]
    for c in state.cycles:
        ack_due = c.ack_due
        key += (c.index, c.kind, c.dispatch_seq, c.unit, c.start, c.start.tzinfo, ack_due,
                ack_due.tzinfo if ack_due is not None else None, c.acked_at, c.resolved_at, c.ended_at, len(c.due))
        for segment in c.due:
            key += (segment.effective_from, segment.effective_from.tzinfo, segment.due, segment.due.tzinfo)
    return tuple(key)


def scheduled(state: TicketState, policy: Policy, calendar: WorkCalendar) -> list[Planned]:
    """Every escalation the ticket's history calls for, by time (then id)."""
    return list(_scheduled(state, policy, calendar))


def _scheduled(state: TicketState, policy: Policy, calendar: WorkCalendar) -> tuple[Planned, ...]:
    key = _plan_key(state, policy, calendar)
    cached = _PLANS.get(key)
    if cached is not None and cached[0] is policy and cached[1] is calendar:
        return cached[2]
    plans = tuple(_compute_scheduled(state, policy, calendar))
    if len(_PLANS) >= _PLANS_MAX:
        _PLANS.clear()
    _PLANS[key] = (policy, calendar, plans)
    return plans


def _compute_scheduled(state: TicketState, policy: Policy, calendar: WorkCalendar) -> list[Planned]:
    out: list[Planned] = []
    for cycle in state.cycles:
        if cycle.ack_due is not None:
            done = _end(cycle, cycle.acked_at, cycle.resolved_at)
            if done is None or done > cycle.ack_due:
                out += _levels(state, cycle, EscalationKind.ack_overdue, cycle.ack_due, done, policy.ack_levels,
                               calendar)
        done = _end(cycle, cycle.resolved_at)
        for threshold in policy.warnings:
            at = _first_crossing(cycle, lambda due, t=threshold: cycle.start + (due - cycle.start) * t)
            if at is not None and (done is None or at < done):
                out.append(_plan(state, cycle, EscalationKind.resolve_warning, 1, at, cycle.resolve_due_at(at),
                                 threshold))
        breach = _first_crossing(cycle, lambda due: due)
        if breach is not None and (done is None or breach < done):
            out += _levels(state, cycle, EscalationKind.resolve_overdue, breach, done, policy.resolve_levels, calendar)
    return sorted(out, key=lambda p: (p.at, p.escalation_id))


def split(state: TicketState, now: datetime, policy: Policy,
          calendar: WorkCalendar) -> tuple[list[Escalation], datetime | None]:
    """Escalations due by ``now`` and not emitted before, and the moment of the next one still to come."""
    emitted = set(state.emitted)
    pending = [p for p in _scheduled(state, policy, calendar) if p.escalation_id not in emitted]
    later = [p.at for p in pending if p.at > now]
    return [_build(state, p, policy) for p in pending if p.at <= now], _utc(min(later)) if later else None


def next_check(state: TicketState, policy: Policy, calendar: WorkCalendar) -> datetime | None:
    """The moment of the next escalation not emitted yet (in UTC, like the ``upcoming`` of ``split``)."""
    emitted = set(state.emitted)
    pending = [p.at for p in _scheduled(state, policy, calendar) if p.escalation_id not in emitted]
    return _utc(min(pending)) if pending else None


def _utc(moment: datetime) -> datetime:
    """Check times go into heaps and indexes: aware datetimes that share one tzinfo compare without the
    ``utcoffset`` calls that instants parsed from inputs (each with its own tzinfo) need."""
    return moment.astimezone(timezone.utc)


def mark_emitted(state: TicketState, escalations: list[Escalation]) -> TicketState:
    if not escalations:
        return state
    return state.model_copy(update={"emitted": [*state.emitted, *(e.escalation_id for e in escalations)]})
