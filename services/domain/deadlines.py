"""Which escalations a ticket's history calls for, and when.

``scheduled`` lists every escalation the ticket would get if nothing else happened: warnings at 50 % /
75 % of the resolve time, ``ack_overdue`` and ``resolve_overdue`` at the deadline and higher levels after
the policy's grace periods. Each is judged on the ticket's event-time history alone, so the answer does
not depend on when the question is asked: the streaming worker (wall clock) and the replay (event time)
emit the same escalations with the same deterministic ids.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from schemas import Escalation, EscalationKind
from services.domain.clock import WorkCalendar
from services.domain.policies import Limit, Policy
from services.domain.tickets import Cycle, TicketState

LEVEL_AUDIENCE = {1: "responsible unit", 2: "city operations centre / district", 3: "leadership"}


def escalation_id(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]


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


def _make(state: TicketState, cycle: Cycle, kind: EscalationKind, level: int, at: datetime, deadline: datetime,
          policy: Policy, threshold: float | None = None) -> Escalation:
    return Escalation(
        escalation_id=escalation_id(kind.value, state.ticket_id, cycle.index, level, threshold),
        kind=kind, jurisdiction=state.jurisdiction, ticket_id=state.ticket_id, unit=cycle.unit, level=level,
        threshold=threshold, at=at,
        details={"cycle": cycle.index, "cycle_kind": cycle.kind, "dispatch_seq": cycle.dispatch_seq,
                 "deadline": deadline.isoformat(), "policy": policy.name, "policy_citation": policy.citation,
                 "audience": LEVEL_AUDIENCE[level]},
    )


def _levels(state: TicketState, cycle: Cycle, kind: EscalationKind, breach: datetime, done: datetime | None,
            delays: tuple[Limit, ...], policy: Policy, calendar: WorkCalendar) -> list[Escalation]:
    out = []
    for level, delay in enumerate(delays[:3], start=1):
        at = delay.after(breach, calendar)
        if done is None or at < done:
            out.append(_make(state, cycle, kind, level, at, breach, policy))
    return out


def scheduled(state: TicketState, policy: Policy, calendar: WorkCalendar) -> list[Escalation]:
    out: list[Escalation] = []
    for cycle in state.cycles:
        if cycle.ack_due is not None:
            done = _end(cycle, cycle.acked_at, cycle.resolved_at)
            if done is None or done > cycle.ack_due:
                out += _levels(state, cycle, EscalationKind.ack_overdue, cycle.ack_due, done, policy.ack_levels,
                               policy, calendar)
        done = _end(cycle, cycle.resolved_at)
        for threshold in policy.warnings:
            at = _first_crossing(cycle, lambda due, t=threshold: cycle.start + (due - cycle.start) * t)
            if at is not None and (done is None or at < done):
                out.append(_make(state, cycle, EscalationKind.resolve_warning, 1, at, cycle.resolve_due_at(at), policy,
                                 threshold))
        breach = _first_crossing(cycle, lambda due: due)
        if breach is not None and (done is None or breach < done):
            out += _levels(state, cycle, EscalationKind.resolve_overdue, breach, done, policy.resolve_levels, policy,
                           calendar)
    return sorted(out, key=lambda e: (e.at, e.escalation_id))


def split(state: TicketState, now: datetime, policy: Policy,
          calendar: WorkCalendar) -> tuple[list[Escalation], datetime | None]:
    """Escalations due by ``now`` and not emitted before, and the moment of the next one still to come."""
    emitted = set(state.emitted)
    pending = [e for e in scheduled(state, policy, calendar) if e.escalation_id not in emitted]
    later = [e.at for e in pending if e.at > now]
    return [e for e in pending if e.at <= now], (min(later) if later else None)


def next_check(state: TicketState, policy: Policy, calendar: WorkCalendar) -> datetime | None:
    return split(state, datetime.min.replace(tzinfo=state.opened_at.tzinfo), policy, calendar)[1]


def mark_emitted(state: TicketState, escalations: list[Escalation]) -> TicketState:
    if not escalations:
        return state
    return state.model_copy(update={"emitted": [*state.emitted, *(e.escalation_id for e in escalations)]})
