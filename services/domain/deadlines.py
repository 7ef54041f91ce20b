"""Which escalations a ticket's history calls for, and when.

``scheduled`` lists every escalation the ticket would get if nothing else happened: warnings at 50 % /
75 % of the resolve time, ``ack_overdue`` and ``resolve_overdue`` at the deadline and higher levels after
the policy's grace periods; and, while a ticket waits in the dispatch desk's triage queue, ``triage_overdue`` when
the desk has not dispatched or closed it within the policy's triage limit; ``extension_review_overdue`` when the
desk has not reviewed a unit's extension request (延期审核) in time; and ``repeat_after_close`` when a citizen
reports the same matter again after the ticket was closed or while it stands redirected. Each is judged on the
ticket's event-time history alone, so the answer does not depend on when the question is asked: the streaming
worker (wall clock) and the replay (event time) emit the same escalations with the same deterministic ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import NamedTuple

from schemas import Escalation, EscalationKind
from services.domain.clock import WorkCalendar
from services.domain.policies import Limit, Policy
from services.domain.tickets import REDIRECT_REVIEW, Cycle, Status, TicketState, Transition, extension_records

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


@dataclass(frozen=True, slots=True)
class TriageWait:
    """One stay of a ticket in the dispatch desk's triage queue: the ``number``-th (a ticket the router could not
    place, or a redirect the desk reviews; then each ownership dispute), from its triage (or redirect) step until
    the desk's ruling dispatched or closed it."""

    number: int
    start: datetime
    end: datetime | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class ReviewWait:
    """A unit's extension request (延期) waiting for the dispatch desk's review: the ``number``-th of the ticket, the
    request's id in the history, from its time until the review (or the unit's 办结 or 退单, or a re-dispatch)."""

    number: int
    update_id: str
    start: datetime
    end: datetime | None


@dataclass(frozen=True, slots=True)
class RepeatAfterClose:
    """A repeat report (并单) that joined the ticket after it was closed, or while it stood handed to 110/119/120: the
    ``number``-th such report, its id in the history (``repeat:<event id>``), its time, and the time and action of
    the step it came after (``callback``, the desk's ``close``, or ``redirect``)."""

    number: int
    update_id: str
    at: datetime
    closed_at: datetime
    ended_by: str


class Planned(NamedTuple):
    """An escalation the history calls for, before it is built into the wire contract."""

    at: datetime
    escalation_id: str
    kind: EscalationKind
    level: int
    threshold: float | None
    # the unit's cycle; for ``triage_overdue`` the wait in triage, for ``extension_review_overdue`` the request's wait
    # for review, for ``repeat_after_close`` the report
    cycle: Cycle | TriageWait | ReviewWait | RepeatAfterClose
    deadline: datetime  # for ``repeat_after_close``, the report's time (it has no deadline)
    at_utc: datetime  # ``at`` in UTC, for the many comparisons (datetimes sharing a tzinfo compare cheaply)


def _planned_id(kind: str, ticket_id: str, cycle: int | str, level: int, threshold: float | None) -> str:
    """``escalation_id(kind, ticket_id, cycle, level, threshold)``, with the parts formatted directly."""
    return hashlib.sha256(f"{kind}|{ticket_id}|{cycle}|{level}|{threshold}".encode()).hexdigest()[:32]


def _plan(ticket_id: str, cycle: Cycle, kind: EscalationKind, level: int, at: datetime, deadline: datetime,
          threshold: float | None = None) -> Planned:
    return Planned(at, _planned_id(kind.value, ticket_id, cycle.index, level, threshold), kind, level, threshold,
                   cycle, deadline, _utc(at))


def raised_levels(policies: Iterable[Policy]) -> dict[EscalationKind, tuple[int, ...]]:
    """What the clocks raise under ``policies``, by kind and level: a warning (if a policy has any) and a repeat
    report after closure (if a policy escalates it) at level 1; an overdue at one level per delay of its policy,
    three at most. The SLA worker declares these series up front."""
    most: dict[EscalationKind, int] = {}
    for p in policies:
        for kind, n in ((_WARNING, min(1, len(p.warnings))), (_ACK, len(p.ack_levels)),
                        (EscalationKind.resolve_overdue, len(p.resolve_levels)), (_TRIAGE, len(p.triage.levels)),
                        (_REVIEW, len(p.extension_review.levels)), (_REPEAT, int(p.repeat_after_close))):
            most[kind] = max(most.get(kind, 0), min(n, 3))
    return {kind: tuple(range(1, n + 1)) for kind, n in most.items() if n}


def _build(state: TicketState, p: Planned, policy: Policy, desk: str | None) -> Escalation:
    c = p.cycle
    where: dict[str, object]
    if isinstance(c, TriageWait):  # the desk's clock: the desk answers for it, under the policy's triage terms
        unit, citation = desk, policy.triage.citation
        where = {"triage_wait": c.number, "in_triage_since": c.start.isoformat(), "triage_reason": c.reason,
                 "deadline": p.deadline.isoformat()}
    elif isinstance(c, ReviewWait):  # the desk's review of a 延期 the unit asked for
        unit, citation = desk, policy.extension_review.citation
        where = {"extension_request": c.update_id, "requested_at": c.start.isoformat(),
                 "deadline": p.deadline.isoformat()}
    elif isinstance(c, RepeatAfterClose):  # news for the desk, which decides what to do
        unit, citation = desk, policy.repeat_after_close_citation
        where = {"repeat_after_close": c.number, "repeat_update_id": c.update_id, "closed_at": c.closed_at.isoformat(),
                 "ended_by": c.ended_by}
    else:
        unit, citation = c.unit, policy.citation
        where = {"cycle": c.index, "cycle_kind": c.kind, "dispatch_seq": c.dispatch_seq,
                 "deadline": p.deadline.isoformat()}
    return Escalation(
        escalation_id=p.escalation_id, kind=p.kind, jurisdiction=state.jurisdiction, ticket_id=state.ticket_id,
        unit=unit, level=p.level, threshold=p.threshold, at=p.at,
        details={**where, "policy": policy.name, "policy_citation": citation, "audience": LEVEL_AUDIENCE[p.level]},
    )


def _levels(ticket_id: str, cycle: Cycle, kind: EscalationKind, breach: datetime, delays: tuple[Limit, ...],
            calendar: WorkCalendar) -> tuple[list[Planned], frozenset[int]]:
    """The escalation levels after a breach, and the calendar years their working days had to guess."""
    plans: list[Planned] = []
    guessed: frozenset[int] = frozenset()
    for level, delay in enumerate(delays[:3], start=1):
        at, years = delay.reach(breach, calendar)
        plans.append(_plan(ticket_id, cycle, kind, level, at, breach))
        guessed |= years
    return plans, guessed


@dataclass(frozen=True, slots=True)
class _Candidates:
    """Everything a cycle's clocks call for if the cycle never ends (acknowledged, resolved, returned), by time
    then id; what is still due is filtered from them by the cycle's ends (``_live``)."""

    plans: tuple[Planned, ...]
    breach: datetime | None  # the first crossing of the resolve deadline in force
    ack_guessed: frozenset[int]  # calendar years the ack levels' working days were guessed in
    overdue_guessed: frozenset[int]  # ... and the resolve-overdue levels'


def _candidates(ticket_id: str, cycle: Cycle, policy: Policy, calendar: WorkCalendar) -> _Candidates:
    out: list[Planned] = []
    ack_guessed: frozenset[int] = frozenset()
    overdue_guessed: frozenset[int] = frozenset()
    if cycle.ack_due is not None:
        levels, ack_guessed = _levels(ticket_id, cycle, EscalationKind.ack_overdue, cycle.ack_due,
                                      policy.ack_levels, calendar)
        out += levels
    limit = policy.resolve_limit(cycle.kind)
    for threshold in policy.warnings:
        at = _first_crossing(cycle, lambda due, t=threshold: _share(cycle.start, due, t, limit, calendar))
        if at is not None:
            out.append(_plan(ticket_id, cycle, EscalationKind.resolve_warning, 1, at, cycle.resolve_due_at(at),
                             threshold))
    breach = _first_crossing(cycle, lambda due: due)
    if breach is not None:
        levels, overdue_guessed = _levels(ticket_id, cycle, EscalationKind.resolve_overdue, breach,
                                          policy.resolve_levels, calendar)
        out += levels
    return _Candidates(tuple(sorted(out, key=_by_time)), breach, ack_guessed, overdue_guessed)


def _share(start: datetime, due: datetime, share: float, limit: Limit, calendar: WorkCalendar) -> datetime:
    """When ``share`` of the time from ``start`` to ``due`` has passed, counted as the limit counts it: working
    time for a limit in working days (a warning at half of 5 working days across 国庆 comes after 2.5 working
    days, not in the middle of the holiday), elapsed time for a limit in hours or days. The years whose days are
    guessed on the way were recorded when ``due`` was worked out."""
    if limit.unit != "working_days":
        return start + (due - start) * share
    days, _ = calendar.span(start, due)
    return calendar.reach(start, days * share)[0]


def _by_time(p: Planned) -> tuple[datetime, str]:
    return p.at_utc, p.escalation_id


def _live(cycle: Cycle, candidates: _Candidates) -> tuple[Planned, ...]:
    """The candidates the cycle's ends leave: an acknowledgement (or resolution, or the end of the cycle) stops
    the ack clock, a resolution (or the end) the resolve clock; only what falls before the stop remains."""
    if cycle.acked_at is None and cycle.resolved_at is None and cycle.ended_at is None:
        return candidates.plans
    ack_done = _end(cycle, cycle.acked_at, cycle.resolved_at)
    ack_open = cycle.ack_due is not None and (ack_done is None or ack_done > cycle.ack_due)
    done = _end(cycle, cycle.resolved_at)
    overdue_open = candidates.breach is not None and (done is None or candidates.breach < done)
    ack_done = _utc(ack_done) if ack_done is not None else None
    done = _utc(done) if done is not None else None
    live = []
    for p in candidates.plans:  # by time: once the resolve clock has stopped, nothing after it remains
        if done is not None and p.at_utc >= done:
            break
        if p.kind is _ACK:
            keep = ack_open and (ack_done is None or p.at_utc < ack_done)
        elif p.kind is _WARNING:
            keep = done is None or p.at_utc < done
        else:
            keep = overdue_open and (done is None or p.at_utc < done)
        if keep:
            live.append(p)
    return tuple(live)


_ACK, _WARNING, _TRIAGE = EscalationKind.ack_overdue, EscalationKind.resolve_warning, EscalationKind.triage_overdue
_REPEAT, _REVIEW = EscalationKind.repeat_after_close, EscalationKind.extension_review_overdue

# ``_candidates`` by their inputs (see ``_cycle_key``): a ticket is re-planned after every change and at every
# sweep, mostly with cycles of the same shape. Each entry keeps the policy and calendar it was computed with,
# so their ids in the key cannot be reused while it exists. Bounded: when full, the older half (by insertion) goes.
# An entry takes about 4 KB (its planned escalations and the cycle they hold; ``benchmarks/replay_throughput.py
# --breakdown``): the default, about 70 MB, keeps a worker well inside its memory limit (deploy/: 512 MiB); a replay
# raises it (``planning_cache``).
_CANDIDATES: dict[tuple[object, ...], tuple[Policy, WorkCalendar, _Candidates]] = {}
_CANDIDATES_MAX = 1 << 14


def _trim_candidates(keep: int) -> None:
    for key in list(islice(_CANDIDATES, max(0, len(_CANDIDATES) - keep))):
        del _CANDIDATES[key]


@contextmanager
def planning_cache(max_entries: int) -> Iterator[None]:
    """Keep up to ``max_entries`` cycles' plans while the block runs. The cache must hold the cycles of the tickets
    that are open at once, or every sweep and update re-plans them: a replay of 1,000,000 events has over 100,000
    open at a time (``docs/performance.md``, section 9)."""
    global _CANDIDATES_MAX
    before = _CANDIDATES_MAX
    _CANDIDATES_MAX = max(before, max_entries)
    try:
        yield
    finally:
        _CANDIDATES_MAX = before
        _trim_candidates(before)


def _cycle_key(ticket_id: str, c: Cycle, policy: Policy, calendar: WorkCalendar) -> tuple[object, ...]:
    """Everything ``_candidates`` reads: the ticket id, the policy and calendar (by identity), the cycle's
    fields other than its ends, and the time zones of the datetimes whose zone the planned instants and
    deadlines take (instants in different zones compare and hash equal, but print differently)."""
    ack_due = c.ack_due
    key: list[object] = [ticket_id, id(policy), id(calendar), c.index, c.kind, c.dispatch_seq, c.unit, c.start,
                         c.start.tzinfo, ack_due, ack_due.tzinfo if ack_due is not None else None]
    for segment in c.due:
        key += (segment.effective_from, segment.effective_from.tzinfo, segment.due, segment.due.tzinfo)
    return tuple(key)


def _cycle_candidates(ticket_id: str, cycle: Cycle, policy: Policy, calendar: WorkCalendar) -> _Candidates:
    key = _cycle_key(ticket_id, cycle, policy, calendar)
    cached = _CANDIDATES.get(key)
    if cached is not None and cached[0] is policy and cached[1] is calendar:
        return cached[2]
    candidates = _candidates(ticket_id, cycle, policy, calendar)
    if len(_CANDIDATES) >= _CANDIDATES_MAX:
        _trim_candidates(_CANDIDATES_MAX // 2)
    _CANDIDATES[key] = (policy, calendar, candidates)
    return candidates


def scheduled(state: TicketState, policy: Policy, calendar: WorkCalendar) -> list[Planned]:
    """Every escalation the ticket's history calls for, by time (then id)."""
    return list(_scheduled(state, policy, calendar))


def _scheduled(state: TicketState, policy: Policy, calendar: WorkCalendar) -> tuple[Planned, ...]:
    cycles = state.cycles
    waits, repeats, reviews = _history(state)
    if len(cycles) == 1 and not waits and not repeats and not reviews:
        return _cycle_plans(state.ticket_id, cycles[0], policy, calendar)
    plans = [p for c in cycles for p in _cycle_plans(state.ticket_id, c, policy, calendar)]
    plans += (p for wait in waits for p in _triage_plans(state.ticket_id, wait, policy, calendar))
    plans += (p for review in reviews for p in _review_plans(state, review, policy, calendar))
    if policy.repeat_after_close:
        plans += (Planned(r.at, _planned_id(_REPEAT.value, state.ticket_id, r.update_id, 1, None), _REPEAT, 1, None, r,
                          r.at, _utc(r.at)) for r in repeats)
    return tuple(sorted(plans, key=_by_time))


_LEAVES_TRIAGE = frozenset({"dispatch", "close"})  # the desk's ruling: a work order, or closed without one
_TAKES_BACK = frozenset({"dispatch", "reopen"})  # after closure or a redirect, the city works on the ticket again


def triage_waits(state: TicketState) -> list[TriageWait]:
    """The ticket's stays in triage, from its history (in event-time order)."""
    return _history(state)[0]


def repeats_after_close(state: TicketState) -> list[RepeatAfterClose]:
    """The repeat reports that joined the ticket after it was closed, from its history (in event-time order)."""
    return _history(state)[1]


def extension_reviews(state: TicketState) -> list[ReviewWait]:
    """The unit's extension requests and how long each waited for the desk's review (in event-time order)."""
    return _history(state)[2]


def _history(state: TicketState) -> tuple[list[TriageWait], list[RepeatAfterClose], list[ReviewWait]]:
    """From the history (in event-time order; at one instant the lifecycle's steps come before repeat reports): the
    stays in triage, the repeat reports after the ticket was closed or while it was redirected (until the desk
    reopens or dispatches it), and the extension requests' waits for review, each until the review of it or its
    lapse (one at a time: the lifecycle refuses a second while one is pending)."""
    waits: list[TriageWait] = []
    repeats: list[RepeatAfterClose] = []
    start: datetime | None = None
    reason: str | None = None
    ended: Transition | None = None  # the step that took the ticket out of the city's hands, while it holds
    for t in state.transitions:
        action = t.action
        if action == "repeat":
            if ended is not None:
                repeats.append(RepeatAfterClose(len(repeats) + 1, t.update_id, t.at, ended.at, ended.action))
            continue
        if start is None and (action == "triage" or (action == "redirect" and t.note == REDIRECT_REVIEW)):
            start, reason = t.at, t.reason if action == "triage" else t.note  # a reviewed redirect: its reason is 110…
        elif start is not None and action in _LEAVES_TRIAGE:
            waits.append(TriageWait(len(waits) + 1, start, t.at, reason))
            start = None
        # a redirect the desk reviews is in the desk's hands (its triage clock runs): no one is missing
        if (t.to_status is Status.closed and t.from_status is not Status.closed) or (
                action == "redirect" and t.note != REDIRECT_REVIEW):
            ended = t  # (a step recorded on a closed ticket, such as a moot review, does not close it again)
        elif action in _TAKES_BACK:  # the desk dispatched or reopened the ticket: the city handles it again
            ended = None
    if start is not None:
        waits.append(TriageWait(len(waits) + 1, start, None, reason))
    reviews = [ReviewWait(i, r.asked.update_id, r.asked.at, r.settled.at if r.settled is not None else None)
               for i, r in enumerate(extension_records(state), 1)]
    return waits, repeats, reviews


def _triage_plans(ticket_id: str, wait: TriageWait, policy: Policy, calendar: WorkCalendar) -> list[Planned]:
    """The desk's clock: ``policy.triage`` from the start of the wait, then the triage levels; what falls at or
    after the ruling that ended the wait is not due."""
    deadline, guessed = policy.triage.limit.reach(wait.start, calendar)
    return _desk_plans(_TRIAGE, ticket_id, wait.number, wait, deadline, guessed, policy.triage.levels, calendar)


def _review_plans(state: TicketState, wait: ReviewWait, policy: Policy, calendar: WorkCalendar) -> list[Planned]:
    """The desk's review of a 延期: ``policy.extension_review`` after the request, but no later than the deadline
    the unit asks to move (in force at the request), then the review levels; what falls at or after the review
    (or whatever else settled the request) is not due."""
    deadline, guessed = policy.extension_review.limit.reach(wait.start, calendar)
    cycle = next((c for c in reversed(state.cycles) if c.start <= wait.start), None)
    if cycle is not None:
        due = cycle.resolve_due_at(wait.start)
        if due < deadline:
            deadline, guessed = due, frozenset()
    return _desk_plans(_REVIEW, state.ticket_id, wait.update_id, wait, deadline, guessed,
                       policy.extension_review.levels, calendar)


def _desk_plans(kind: EscalationKind, ticket_id: str, key: int | str, wait: TriageWait | ReviewWait,
                deadline: datetime, guessed: frozenset[int], delays: tuple[Limit, ...],
                calendar: WorkCalendar) -> list[Planned]:
    """Levels 1–3 of one of the desk's clocks, ``delays`` after ``deadline``, up to the end of ``wait``; ids by
    ``key`` (the wait's number, or the request's id). The calendar years guessed on the way are recorded when
    something is due."""
    end = _utc(wait.end) if wait.end is not None else None
    plans: list[Planned] = []
    for level, delay in enumerate(delays[:3], start=1):
        at, years = delay.reach(deadline, calendar)
        at_utc = _utc(at)
        if end is not None and at_utc >= end:
            break
        guessed |= years
        plans.append(Planned(at, _planned_id(kind.value, ticket_id, key, level, None), kind, level, None, wait,
                             deadline, at_utc))
    if plans:
        calendar.fallback_years.update(guessed)
    return plans


def _cycle_plans(ticket_id: str, cycle: Cycle, policy: Policy, calendar: WorkCalendar) -> tuple[Planned, ...]:
    candidates = _cycle_candidates(ticket_id, cycle, policy, calendar)
    if candidates.ack_guessed or candidates.overdue_guessed:
        _record_guessed(cycle, candidates, calendar)
    return _live(cycle, candidates)


def _record_guessed(cycle: Cycle, candidates: _Candidates, calendar: WorkCalendar) -> None:
    """Candidates are worked out ahead, once per cycle shape, without recording the calendar years whose working
    days had to be guessed. A plan uses the ack levels while the ack clock runs and the overdue levels while the
    resolve deadline stands unmet: their years are recorded then, as when these levels were worked out for
    each plan."""
    if candidates.ack_guessed:
        ack_done = _end(cycle, cycle.acked_at, cycle.resolved_at)
        if cycle.ack_due is not None and (ack_done is None or ack_done > cycle.ack_due):
            calendar.fallback_years.update(candidates.ack_guessed)
    if candidates.overdue_guessed:
        done = _end(cycle, cycle.resolved_at)
        if candidates.breach is not None and (done is None or candidates.breach < done):
            calendar.fallback_years.update(candidates.overdue_guessed)


def split(state: TicketState, now: datetime, policy: Policy, calendar: WorkCalendar,
          desk: str | None = None) -> tuple[list[Escalation], datetime | None]:
    """Escalations due by ``now`` and not emitted before, and the moment of the next one still to come.
    ``desk`` (the jurisdiction's dispatch desk) is the unit the desk's escalations name (``triage_overdue``,
    ``extension_review_overdue``, ``repeat_after_close``)."""
    emitted = set(state.emitted)
    pending = [p for p in _scheduled(state, policy, calendar) if p.escalation_id not in emitted]
    now = _utc(now)
    later = [p.at_utc for p in pending if p.at_utc > now]
    return [_build(state, p, policy, desk) for p in pending if p.at_utc <= now], min(later) if later else None


def next_check(state: TicketState, policy: Policy, calendar: WorkCalendar) -> datetime | None:
    """The moment of the next escalation not emitted yet (in UTC, like the ``upcoming`` of ``split``)."""
    emitted = set(state.emitted)
    pending = [p.at_utc for p in _scheduled(state, policy, calendar) if p.escalation_id not in emitted]
    return min(pending) if pending else None


def _utc(moment: datetime) -> datetime:
    """Check times go into heaps and indexes: aware datetimes that share one tzinfo compare without the
    ``utcoffset`` calls that instants parsed from inputs (each with its own tzinfo) need."""
    return moment.astimezone(UTC)


def mark_emitted(state: TicketState, escalations: list[Escalation]) -> TicketState:
    if not escalations:
        return state
    return state.model_copy(update={"emitted": [*state.emitted, *(e.escalation_id for e in escalations)]})
