"""The work-order lifecycle: 派单 → 签收 → 办结 → 回访, with 退单, 延期 and 重办 (after an unsatisfied callback, or
the dispatch desk's reopening of a closed ticket).

Pure functions over ``TicketState``: each returns a new state (the input is never mutated) or a
``Rejection`` naming why the update cannot apply. Nothing here raises on bad input from a unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas import RepeatReport, RoutingDecision, UnitAction, UnitUpdate, WorkOrder
from services.domain.clock import WorkCalendar
from services.domain.policies import Policy
from services.domain.tickets import (OPEN_FOR_UNIT, Cycle, DueSegment, ExtensionRecord, ExtensionRequest, Status,
                                     TicketState, Transition, extension_records)
from services.domain.validation import Rejection, unknown_ticket


@dataclass(frozen=True)
class Applied:
    state: TicketState
    transition: Transition
    redispatch: bool = False  # a valid 退单: the router must pick the next unit


@dataclass(frozen=True)
class Duplicate:
    state: TicketState


def _transition(state: TicketState, update_id: str, action: str, to: Status, unit: str | None, at: datetime,
                reason: str | None = None, note: str | None = None, extension_id: str | None = None) -> Transition:
    return Transition(seq=len(state.transitions) + 1, update_id=update_id, action=action,
                      from_status=state.status if state.transitions else None, to_status=to, unit=unit, at=at,
                      reason=reason, note=note, extension_id=extension_id)


# recorded in the history, the status stays what it was
KEEPS_STATUS = frozenset({"repeat", "extend", "review_extension"})
_TAKES_FROM_UNIT = frozenset({"triage", "redirect", "close"})  # no unit holds the ticket after these
# where a ticket waits when the desk closes it: triage, or a redirect it was asked to review (the router refuses
# the close of any other redirect)
_DESK_QUEUE = frozenset({Status.triage, Status.redirected})
# What the dispatch desk (the hotline's own staff) posts on the updates topic, not the unit holding the ticket
DESK_WORK = {UnitAction.callback: "a callback (回访)",
             UnitAction.review_extension: "the review of an extension (延期审核)",
             UnitAction.reopen: "reopening a closed ticket (复核重办)"}
DESK_ACTIONS = frozenset(DESK_WORK)
# What the units (and the dispatch desk) do; the rest of the history is recorded by the service itself
# (the opening, dispatches, the triage desk taking a disputed ticket) or comes from citizens (repeat reports).
UNIT_ACTIONS = frozenset(action.value for action in UnitAction)


def _order(t: Transition) -> tuple[datetime, int, str]:
    """Event time; at the same instant, the lifecycle's own steps (opening, dispatch, the units' updates,
    re-dispatch, triage) before repeat reports, the former in the order they were applied (the sort is stable and a
    new transition comes last), repeat reports by id. Each step is applied only after every step before it in the
    order 派单 → 签收 → 办结 → 回访 and never dated before them (``before_dispatch``, ``out_of_order``), so time
    and application order agree, and at the same instant application order is the only one that is right: an
    acknowledgement and a resolution stamped with the same second must stay in that order, whatever their ids."""
    if t.action == "repeat":
        return (t.at, 1, t.update_id)
    return (t.at, 0, "")


def _with(state: TicketState, transition: Transition, **changes: object) -> TicketState:
    """Add a transition. The history is kept in event-time order and numbered in that order, and the set of
    applied ids is kept sorted. A repeat report may arrive after later steps and takes its place by time; every
    other step is in time order already when it is applied (see ``_order``), so the status is that of the latest
    step, and the state does not depend on the order in which the inputs that were applied arrived. A repeat
    report names the unit holding the ticket at its time (a dispatch gives the ticket to its unit; triage and the
    desk's close take it from any unit), whenever it arrived."""
    ordered = sorted([*state.transitions, transition], key=_order)
    transitions: list[Transition] = []
    before: Status | None = None  # the status the previous transition led to
    holder: str | None = None  # the unit holding the ticket after the previous transition
    for i, t in enumerate(ordered, 1):
        after = before if before is not None and t.action in KEEPS_STATUS else t.to_status
        unit = holder if t.action == "repeat" else t.unit
        if t.seq != i or t.from_status != before or t.to_status != after or t.unit != unit:
            t = t.model_copy(update={"seq": i, "from_status": before, "to_status": after, "unit": unit})
        transitions.append(t)
        before = t.to_status
        if t.action == "dispatch":
            holder = t.unit
        elif t.action in _TAKES_FROM_UNIT:
            holder = None
    applied = sorted({*state.applied_updates, transition.update_id})
    return state.model_copy(update={"transitions": transitions, "applied_updates": applied,
                                    "status": transitions[-1].to_status, **changes})


def new_cycle(index: int, dispatch_seq: int, kind: str, unit: str, start: datetime, policy: Policy,
              calendar: WorkCalendar, with_ack: bool) -> Cycle:
    """Cycle number ``index`` of a ticket at dispatch ``dispatch_seq``, with its clocks started at ``start``."""
    limit = policy.resolve_limit(kind)
    return Cycle(index=index, kind=kind, dispatch_seq=dispatch_seq, unit=unit, start=start,
                 ack_due=policy.ack.after(start, calendar) if with_ack else None,
                 due=[DueSegment(effective_from=start, due=limit.after(start, calendar))])


def open_ticket(decision: RoutingDecision, *, source: str, urgency: str, campaigns: list[str],
                opened_at: datetime) -> TicketState:
    """A fresh state for a ticket the router has decided on (dispatch, triage or redirect)."""
    status = {"dispatch": Status.dispatched, "triage": Status.triage, "redirect": Status.redirected,
              "close": Status.closed}[decision.outcome]
    return TicketState(ticket_id=decision.event_id, jurisdiction=str(decision.jurisdiction), source=source,
                       category=decision.category, urgency=urgency, campaigns=list(campaigns), opened_at=opened_at,
                       status=status)


def apply_decision(state: TicketState | None, decision: RoutingDecision, *, source: str, urgency: str,
                   campaigns: list[str], opened_at: datetime, decided_at: datetime | None = None) -> TicketState | Duplicate:
    """Record a triage, redirect or close decision (no work order, so no unit clocks). A returned ticket the router
    hands to triage (an ownership dispute) moves to triage; a ticket in triage the dispatch desk closes (at
    ``decided_at``) is closed; anything else already known is a redelivery. The desk may reopen a ticket it closed
    by a dispatch ruling, whose work order can reach the SLA service before the close (Kafka does not order two
    topics): the close then takes its place in the history before that dispatch, as in the replay."""
    if state is not None and decision.outcome == "close":
        ruled = decided_at or opened_at
        update_id = f"close:{decision.event_id}@{ruled.isoformat()}"  # a ticket may be closed, reopened, closed again
        if update_id in state.applied_updates:
            return Duplicate(state)
        steps = [t for t in state.transitions if t.action != "repeat"]
        if state.status in _DESK_QUEUE:
            # at the ruling's time, but not before the ticket's last own step (repeats take their place by time)
            at: datetime | None = max(ruled, *(t.at for t in steps))
        else:
            at = _closed_before_reopening(steps, ruled)
        if at is None:
            return Duplicate(state)
        transition = _transition(state, update_id, "close", Status.closed, None, at, reason=decision.explanation)
        return _with(state, transition, **({"unit": None} if state.status in _DESK_QUEUE else {}))
    if state is not None:
        if state.status is not Status.returned:
            return Duplicate(state)
        # at the return that disputed it: the router decides on the return, whatever was recorded since (a repeat
        # report, a moot review) that the SLA service may have read before the triage item
        at = max(t.at for t in state.transitions if t.action == "return")
        transition = _transition(state, f"triage:{decision.event_id}:{state.returns}", "triage", Status.triage, None,
                                 at, reason=decision.triage_reason)
        return _with(state, transition, unit=None)
    fresh = open_ticket(decision, source=source, urgency=urgency, campaigns=campaigns, opened_at=opened_at)
    # a redirect names where it went (110/119/120); one the desk reviews says so in its note (REDIRECT_REVIEW)
    redirected = decision.outcome == "redirect"
    transition = _transition(fresh, f"decision:{decision.event_id}", str(decision.outcome), fresh.status, None, opened_at,
                             reason=decision.redirect_to if redirected else decision.triage_reason,
                             note=decision.triage_reason if redirected else None)
    return _with(fresh, transition)


def _closed_before_reopening(steps: list[Transition], ruled: datetime) -> datetime | None:
    """When a close ruled at ``ruled`` took effect, if the ticket was in triage then and a dispatch (the desk's
    reopening ruling, read first) followed it; None if the close does not fit the history (a redelivery)."""
    for i, t in enumerate(steps):
        if t.action == "dispatch" and t.at >= ruled:
            before = steps[i - 1] if i else None
            return max(ruled, before.at) if before is not None and before.to_status in _DESK_QUEUE else None
    return None


def apply_work_order(state: TicketState | None, order: WorkOrder, policy: Policy,
                     calendar: WorkCalendar) -> TicketState | Duplicate:
    """A dispatch (seq 1) or a re-dispatch after a return (seq > 1): a new cycle for the new lead unit."""
    if state is not None and order.dispatch_seq <= state.dispatch_seq:
        return Duplicate(state)
    if state is None:
        state = open_ticket(order.decision, source=str(order.source), urgency=str(order.urgency),
                            campaigns=order.campaigns, opened_at=order.opened_at)
    cycles = [c if c.ended_at else c.model_copy(update={"ended_at": order.dispatched_at}) for c in state.cycles]
    cycle = new_cycle(len(cycles) + 1, order.dispatch_seq, "dispatch", order.lead_unit, order.dispatched_at, policy,
                      calendar, with_ack=True)
    transition = _transition(state, f"dispatch:{order.work_order_id}", "dispatch", Status.dispatched, order.lead_unit,
                             order.dispatched_at)
    # the work order's urgency from now on: a desk's ruling on a redirect may dispatch it urgent (the urgent screen)
    return _with(state, transition, dispatch_seq=order.dispatch_seq, category=order.category, policy=policy.name,
                 urgency=str(order.urgency),
                 unit=order.lead_unit, cycles=[*cycles, cycle],
                 first_dispatched_at=state.first_dispatched_at or order.dispatched_at)


def apply_update(state: TicketState | None, update: UnitUpdate, policy: Policy | None,
                 calendar: WorkCalendar, desk: str | None = None) -> Applied | Rejection | Duplicate:
    """Apply an update of the unit holding the ticket, or of the jurisdiction's dispatch desk (``desk``, the
    rulebook's ``triage_unit``): only the desk calls the citizen back (回访), reviews a 延期 and reopens a closed
    ticket, so a unit cannot declare its own work satisfactory or grant itself more time."""
    if state is None or policy is None:
        return unknown_ticket(update.ticket_id)
    if update.event_id in state.applied_updates:
        return _resent(state, update)
    cycle = state.cycle
    # a review of a request that lapsed changes nothing: it is recorded whatever the status, and wherever its time
    # falls (before a re-dispatch read first, as in the replay); one that names its request is answered by name
    moot = _is_moot(state, update)
    by_name = moot or (update.action is UnitAction.review_extension and update.extension_id is not None)
    if (state.status in (Status.triage, Status.redirected) or cycle is None) and not by_name:
        return Rejection("invalid_transition", "action",
                         f"ticket is {state.status.value}, no unit holds it; {update.action.value} is not possible"
                         + (_BY_RULING if update.action is UnitAction.reopen and state.status is Status.closed else ""))
    if update.action in DESK_ACTIONS:
        if update.unit != desk:
            return Rejection("not_the_desk", "unit", f"{DESK_WORK[update.action]} is the dispatch desk's of "
                                                     f"{state.jurisdiction} ({desk!r}), not {update.unit!r}'s")
    elif update.unit != state.unit:
        return Rejection("unit_mismatch", "unit", f"ticket is held by {state.unit!r}, not {update.unit!r}")
    dispatched_at = next((c.start for c in reversed(state.cycles) if c.kind == "dispatch"), None)
    if dispatched_at is not None and update.occurred_at < dispatched_at and not moot:
        return Rejection("before_dispatch", "occurred_at",
                         f"{update.occurred_at.isoformat()} precedes the current dispatch at {dispatched_at.isoformat()}")
    # a re-handling cycle starts at the unsatisfied callback or the desk's reopening, a desk step: what precedes it is
    # out of order
    latest = _latest_unit_step(state)
    if latest is not None and update.occurred_at < latest.at:
        return Rejection("out_of_order", "occurred_at",
                         f"{update.action.value} at {update.occurred_at.isoformat()} is earlier than the "
                         f"{latest.action} at {latest.at.isoformat()} already applied; a unit's updates must come in "
                         f"event-time order")
    handler = _HANDLERS[update.action]
    return handler(state, cycle, update, policy, calendar)


def _resent(state: TicketState, update: UnitUpdate) -> Duplicate | Rejection:
    """An update whose id the ticket has applied: the same update sent again, or another one under that id (a
    unit's step under the id of the desk's callback would otherwise pass for it, and the callback, when it came,
    for a copy of it)."""
    recorded = next((t for t in state.transitions if t.update_id == update.event_id), None)
    if recorded is None or (recorded.action, recorded.unit) == (update.action.value, update.unit):
        return Duplicate(state)
    return Rejection("id_conflict", "event_id",
                     f"event_id {update.event_id!r} was applied to this ticket as the {recorded.action} of "
                     f"{recorded.unit!r} at {recorded.at.isoformat()}; this {update.action.value} of {update.unit!r} "
                     f"is another update and needs an id of its own")


def _latest_unit_step(state: TicketState) -> Transition | None:
    """The latest update of a unit (or the dispatch desk) applied to the ticket. An update dated before it is
    refused: the handlers judge an update by the status at its arrival, which would not be the status at its
    event time. What the service records itself does not count: dispatches are guarded by ``before_dispatch``,
    repeat reports keep the status, sweeps add no transition."""
    latest: Transition | None = None
    for t in state.transitions:
        if t.action in UNIT_ACTIONS and (latest is None or t.at >= latest.at):
            latest = t
    return latest


# a ticket the desk closed without a work order (or after an ownership dispute) has no unit to reopen it for
_BY_RULING = "; the dispatch desk reopens a ticket it closed itself with a dispatch ruling (rulings topic)"


def _illegal(state: TicketState, update: UnitUpdate) -> Rejection:
    return Rejection("invalid_transition", "action",
                     f"{update.action.value} is not possible while the ticket is {state.status.value}")


def _acknowledge(state, cycle, update, policy, calendar):  # type: ignore[no-untyped-def]
    if state.status is not Status.dispatched:
        return _illegal(state, update)
    cycles = [*state.cycles[:-1], cycle.model_copy(update={"acked_at": update.occurred_at})]
    transition = _transition(state, update.event_id, "acknowledge", Status.acknowledged, update.unit,
                             update.occurred_at, note=update.note)
    return Applied(_with(state, transition, cycles=cycles), transition)


def _return(state, cycle, update, policy, calendar):  # type: ignore[no-untyped-def]
    if state.status not in (Status.dispatched, Status.acknowledged):
        return _illegal(state, update)
    cycles = [*state.cycles[:-1], cycle.model_copy(update={"ended_at": update.occurred_at, "extension_request": None})]
    transition = _transition(state, update.event_id, "return", Status.returned, update.unit, update.occurred_at,
                             reason=update.reason, note=update.note)
    return Applied(_with(state, transition, cycles=cycles, returns=state.returns + 1), transition, redispatch=True)


def _resolve(state, cycle, update, policy, calendar):  # type: ignore[no-untyped-def]
    if state.status not in OPEN_FOR_UNIT:
        return _illegal(state, update)
    # a 延期 still waiting for review lapses: there is nothing left to extend (a later review is recorded as moot)
    cycles = [*state.cycles[:-1], cycle.model_copy(update={"resolved_at": update.occurred_at,
                                                           "extension_request": None})]
    transition = _transition(state, update.event_id, "resolve", Status.resolved, update.unit, update.occurred_at,
                             note=update.note)
    return Applied(_with(state, transition, cycles=cycles), transition)


def _extend(state, cycle, update, policy, calendar):  # type: ignore[no-untyped-def]
    """The unit's request: recorded and kept on the cycle for the desk's review; the deadline stays."""
    if state.status not in OPEN_FOR_UNIT:
        return _illegal(state, update)
    if cycle.extension_request is not None:
        pending = cycle.extension_request
        return Rejection("extension_pending", "action",
                         f"the extension requested at {pending.requested_at.isoformat()} ({pending.update_id}) is "
                         f"still waiting for the dispatch desk's review (延期审核); one request at a time")
    current = cycle.resolve_due_at(update.occurred_at)
    if update.occurred_at > current:
        return Rejection("extension_after_due", "occurred_at",
                         f"extension requested at {update.occurred_at.isoformat()}, after the deadline "
                         f"{current.isoformat()} had passed; 延期 must be requested within the time limit")
    if update.new_due is None or update.new_due <= current:
        return Rejection("extension_not_later", "new_due",
                         f"new_due must be later than the current deadline {current.isoformat()}")
    request = ExtensionRequest(update_id=update.event_id, requested_at=update.occurred_at, new_due=update.new_due)
    cycles = [*state.cycles[:-1], cycle.model_copy(update={"extension_request": request})]
    transition = _transition(state, update.event_id, "extend", state.status, update.unit, update.occurred_at,
                             reason=update.reason,
                             note=f"asks due {current.isoformat()} -> {update.new_due.isoformat()}, for review")
    return Applied(_with(state, transition, cycles=cycles), transition)


def _review_extension(state, cycle, update, policy, calendar):  # type: ignore[no-untyped-def]
    """The desk's 延期审核 of the request it names (``extension_id``), or without a name of the one waiting.
    Granted, the new deadline holds from the review on; refused, the deadline stays. Either way the request is
    settled. A grant does not rewrite the past: what was due before it (a warning, an overdue level while the desk
    took its time) stays due, so an escalation already sent remains right, and the streaming SLA worker, which may
    have swept past the old deadline before the review reaches it, and the replay agree. A review of a request that
    lapsed first (the unit resolved or returned the ticket, or it was re-dispatched or taken to triage) crossed it
    on the way: it is recorded, as moot, and changes nothing — also while a later request waits, which the review
    of the lapsed one therefore must name."""
    request = cycle.extension_request if state.status in OPEN_FOR_UNIT else None
    named = update.extension_id
    if request is not None and named in (None, request.update_id):
        return _decide(state, cycle, update, request)
    record = _addressed(state, update)
    if record is not None and record.lapsed:
        assert record.settled is not None
        transition = _transition(state, update.event_id, "review_extension", state.status, update.unit,
                                 update.occurred_at, reason=update.reason, extension_id=record.asked.update_id,
                                 note=f"moot: {record.asked.update_id} lapsed at {record.settled.at.isoformat()} "
                                      f"({record.settled.action}) before the review")
        return Applied(_with(state, transition), transition)
    if named is not None:
        answered = record.answered if record is not None else None  # (not lapsed, not waiting: answered)
        why = f"{answered.update_id} answered it at {answered.at.isoformat()}" if answered else "no such request"
        return Rejection("no_extension_request", "extension_id",
                         f"{named!r} is no extension (延期) of this ticket waiting for review: {why}")
    if state.status not in OPEN_FOR_UNIT:
        return _illegal(state, update)
    return Rejection("no_extension_request", "action",
                     f"{cycle.unit!r} has no extension (延期) waiting for review on this ticket")


def _decide(state: TicketState, cycle: Cycle, update: UnitUpdate, request: ExtensionRequest) -> Applied:
    current = cycle.resolve_due_at(update.occurred_at)
    change: dict[str, object] = {"extension_request": None}
    if update.approved:
        change["due"] = [*cycle.due, DueSegment(effective_from=update.occurred_at, due=request.new_due)]
        note = f"granted {request.update_id}: due {current.isoformat()} -> {request.new_due.isoformat()}"
    else:
        note = f"refused {request.update_id}: due stays {current.isoformat()}"
    cycles = [*state.cycles[:-1], cycle.model_copy(update=change)]
    transition = _transition(state, update.event_id, "review_extension", state.status, update.unit,
                             update.occurred_at, reason=update.reason, note=note, extension_id=request.update_id)
    return Applied(_with(state, transition, cycles=cycles), transition)


def _addressed(state: TicketState, update: UnitUpdate) -> ExtensionRecord | None:
    """The request a review addresses: the one it names, or without a name the latest, if that one lapsed."""
    records = extension_records(state)
    if update.extension_id is not None:
        return next((r for r in records if r.asked.update_id == update.extension_id), None)
    return records[-1] if records and records[-1].lapsed else None


def _is_moot(state: TicketState, update: UnitUpdate) -> bool:
    """Is ``update`` a review of a request that lapsed, to be recorded as moot whatever the ticket's status — also
    while it waits in triage after the unit returned it?"""
    if update.action is not UnitAction.review_extension:
        return False
    record = _addressed(state, update)
    return record is not None and record.lapsed


def _callback(state, cycle, update, policy, calendar):  # type: ignore[no-untyped-def]
    if state.status is not Status.resolved:
        return _illegal(state, update)
    if update.satisfied:
        transition = _transition(state, update.event_id, "callback", Status.closed, update.unit, update.occurred_at,
                                 note=update.note)
        return Applied(_with(state, transition), transition)
    return _rehandle(state, cycle, update, policy, calendar)


def _reopen(state, cycle, update, policy, calendar):  # type: ignore[no-untyped-def]
    """The desk's 复核重办: a ticket closed after a satisfied callback goes back to the unit that resolved it, on the
    re-handling clock, as after an unsatisfied callback (a repeat report of the matter, a review of the callback)."""
    if state.status is not Status.closed:
        return _illegal(state, update)
    if cycle.resolved_at is None or cycle.ended_at is not None:  # closed by the desk after a dispute, not a callback
        return Rejection("invalid_transition", "action", f"ticket was closed by the dispatch desk without a unit's "
                                                         f"办结; reopen is not possible{_BY_RULING}")
    return _rehandle(state, cycle, update, policy, calendar)


def _rehandle(state, cycle, update, policy, calendar):  # type: ignore[no-untyped-def]
    """重办: the cycle ends and a re-handling cycle for its unit starts at the desk's step (no 签收 clock)."""
    ended = [*state.cycles[:-1], cycle.model_copy(update={"ended_at": update.occurred_at})]
    fresh = new_cycle(len(ended) + 1, state.dispatch_seq, "reopen", cycle.unit, update.occurred_at, policy, calendar,
                      with_ack=False)
    transition = _transition(state, update.event_id, update.action.value, Status.reopened, update.unit,
                             update.occurred_at, reason=update.reason, note=update.note)
    return Applied(_with(state, transition, cycles=[*ended, fresh], reopens=state.reopens + 1), transition)


_HANDLERS = {
    UnitAction.acknowledge: _acknowledge,
    UnitAction.return_: _return,
    UnitAction.resolve: _resolve,
    UnitAction.extend: _extend,
    UnitAction.review_extension: _review_extension,
    UnitAction.callback: _callback,
    UnitAction.reopen: _reopen,
}


def apply_repeat(state: TicketState, report: RepeatReport, raise_priority_at: int) -> TicketState | Duplicate:
    """A repeat report joined the ticket: count it, raise the priority after enough repeats, audit it."""
    update_id = f"repeat:{report.event_id}"
    if update_id in state.applied_updates:
        return Duplicate(state)
    repeats = state.repeats + 1
    transition = Transition(seq=len(state.transitions) + 1, update_id=update_id, action="repeat",
                            from_status=state.status, to_status=state.status, unit=state.unit, at=report.occurred_at,
                            note=f"repeat {repeats} from {report.source.value} (similarity {report.similarity:.2f})")
    priority = "high" if repeats >= raise_priority_at else state.priority
    return _with(state, transition, repeats=repeats, priority=priority)
