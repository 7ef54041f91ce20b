from __future__ import annotations

from services.domain import sla
from services.domain.lifecycle import Applied, Duplicate
from services.domain.tickets import Status
from services.domain.validation import Rejection
from tests.conftest import cst
from tests.factories import DESK, review, update, work_order


def _open(rules):  # type: ignore[no-untyped-def]
    state = sla.on_work_order(None, work_order("T1", cst("2025-06-09 09:00")), rules)
    assert not isinstance(state, Duplicate)
    return state


def test_happy_path_dispatch_ack_resolve_close(rules) -> None:  # type: ignore[no-untyped-def]
    state = _open(rules)
    assert state.status is Status.dispatched
    assert state.cycle.ack_due == cst("2025-06-10 09:00")
    assert state.cycle.final_due == cst("2025-06-16 09:00")
    for action, expected in (("acknowledge", Status.acknowledged), ("resolve", Status.resolved),
                             ("callback", Status.closed)):
        result = sla.on_update(state, update("T1", action, cst("2025-06-10 08:00")), rules)
        assert isinstance(result, Applied), result
        state = result.state
        assert state.status is expected
    assert [t.to_status for t in state.transitions] == ["dispatched", "acknowledged", "resolved", "closed"]


def test_impossible_transitions_are_rejected_with_a_reason(rules) -> None:  # type: ignore[no-untyped-def]
    state = _open(rules)
    bad = sla.on_update(state, update("T1", "callback", cst("2025-06-09 10:00")), rules)
    assert isinstance(bad, Rejection) and bad.reason == "invalid_transition" and bad.field == "action"
    other = sla.on_update(state, update("T1", "acknowledge", cst("2025-06-09 10:00"), unit="区房管局"), rules)
    assert isinstance(other, Rejection) and other.reason == "unit_mismatch" and other.field == "unit"
    early = sla.on_update(state, update("T1", "acknowledge", cst("2025-06-08 10:00")), rules)
    assert isinstance(early, Rejection) and early.reason == "before_dispatch"
    unknown = sla.on_update(None, update("T9", "acknowledge", cst("2025-06-09 10:00")), rules)
    assert isinstance(unknown, Rejection) and unknown.reason == "unknown_ticket"


def test_only_the_desk_calls_back(rules) -> None:  # type: ignore[no-untyped-def]
    """Was: a callback from anyone applied, so a unit could post 'satisfied' for its own work (满意率) and close it."""
    state = _open(rules)
    for action in ("acknowledge", "resolve"):
        state = sla.on_update(state, update("T1", action, cst("2025-06-10 08:00")), rules).state
    own = sla.on_update(state, update("T1", "callback", cst("2025-06-10 09:00"), unit="区城管执法局"), rules)
    assert isinstance(own, Rejection) and own.reason == "not_the_desk" and own.field == "unit"
    assert "回访" in own.error and DESK in own.error
    desk = sla.on_update(state, update("T1", "callback", cst("2025-06-10 09:00")), rules)
    assert isinstance(desk, Applied) and desk.state.status is Status.closed and desk.transition.unit == DESK
    assert desk.state.unit == "区城管执法局"  # the ticket stays the unit's: its scorecard counts the callback


def test_redelivered_update_changes_nothing(rules) -> None:  # type: ignore[no-untyped-def]
    state = _open(rules)
    ack = update("T1", "acknowledge", cst("2025-06-09 10:00"))
    first = sla.on_update(state, ack, rules)
    assert isinstance(first, Applied)
    again = sla.on_update(first.state, ack, rules)
    assert isinstance(again, Duplicate) and again.state == first.state
    assert isinstance(sla.on_work_order(first.state, work_order("T1", cst("2025-06-09 09:00")), rules), Duplicate)


def test_another_update_under_an_applied_id_is_an_id_conflict(rules) -> None:  # type: ignore[no-untyped-def]
    """Was: any update whose id the ticket had applied passed for a copy, so a unit's resolution sent under the id
    the desk's callback would use made the callback, when it came, a silent duplicate."""
    state = _open(rules)
    ack = update("T1", "acknowledge", cst("2025-06-09 10:00"))
    state = sla.on_update(state, ack, rules).state
    resolve = update("T1", "resolve", cst("2025-06-10 10:00"))
    state = sla.on_update(state, resolve, rules).state
    callback = update("T1", "callback", cst("2025-06-10 11:00")).model_copy(update={"event_id": resolve.event_id})
    conflict = sla.on_update(state, callback, rules)
    assert isinstance(conflict, Rejection) and (conflict.reason, conflict.field) == ("id_conflict", "event_id")
    assert "the resolve of '区城管执法局'" in conflict.error and "this callback of" in conflict.error
    # the same action of the same unit under its id is a copy, even stamped again
    again = sla.on_update(state, ack.model_copy(update={"occurred_at": cst("2025-06-09 10:05")}), rules)
    assert isinstance(again, Duplicate) and again.state == state
    other_unit = ack.model_copy(update={"unit": "区房管局"})
    assert sla.on_update(state, other_unit, rules).reason == "id_conflict"  # type: ignore[union-attr]


def test_unsatisfied_callback_reopens_with_rehandle_clock(rules) -> None:  # type: ignore[no-untyped-def]
    state = _open(rules)
    for action, at in (("acknowledge", "2025-06-09 10:00"), ("resolve", "2025-06-10 10:00")):
        state = sla.on_update(state, update("T1", action, cst(at)), rules).state
    result = sla.on_update(state, update("T1", "callback", cst("2025-06-11 10:00"), satisfied=False,
                                         reason="没解决"), rules)
    assert isinstance(result, Applied)
    state = result.state
    assert state.status is Status.reopened and state.reopens == 1
    assert state.cycle.kind == "reopen" and state.cycle.ack_due is None
    assert state.cycle.final_due == cst("2025-06-16 10:00")  # 3 working days (重办)
    assert not state.resolved_as_of(cst("2025-06-12 00:00"))
    assert state.resolved_as_of(cst("2025-06-10 12:00"))


def test_extension_moves_the_deadline_once_the_desk_grants_it(rules) -> None:  # type: ignore[no-untyped-def]
    state = _open(rules)  # resolve due 2025-06-16 09:00
    late = sla.on_update(state, update("T1", "extend", cst("2025-06-10 10:00"), new_due=cst("2025-06-05 00:00"),
                                       reason="x"), rules)
    assert isinstance(late, Rejection) and late.reason == "extension_not_later" and late.field == "new_due"
    asked = sla.on_update(state, update("T1", "extend", cst("2025-06-10 10:00"), new_due=cst("2025-06-30 18:00"),
                                        reason="需协调"), rules)
    assert isinstance(asked, Applied) and asked.transition.action == "extend"
    assert "2025-06-30" in (asked.transition.note or "") and "review" in (asked.transition.note or "")
    # asked, not granted: the deadline stays, and a second request waits for the first one's review
    assert asked.state.cycle.final_due == cst("2025-06-16 09:00")
    assert asked.state.status is Status.dispatched
    again = sla.on_update(asked.state, update("T1", "extend", cst("2025-06-11 10:00"), new_due=cst("2025-07-30 18:00"),
                                              reason="再延"), rules)
    assert isinstance(again, Rejection) and again.reason == "extension_pending" and again.field == "action"
    # only the jurisdiction's dispatch desk reviews; the unit cannot grant itself its extension
    itself = sla.on_update(asked.state, update("T1", "review_extension", cst("2025-06-11 10:00"), approved=True,
                                               unit="区城管执法局"), rules)
    assert isinstance(itself, Rejection) and itself.reason == "not_the_desk" and itself.field == "unit"
    assert DESK in itself.error
    granted = sla.on_update(asked.state, review("T1", cst("2025-06-17 10:00")), rules)
    assert isinstance(granted, Applied) and granted.transition.action == "review_extension"
    assert granted.transition.unit == DESK and granted.state.status is Status.dispatched
    assert granted.state.cycle.final_due == cst("2025-06-30 18:00")
    assert granted.state.cycle.extension_request is None
    # granted after the old deadline, the extension holds from the review on: the ticket was late meanwhile
    assert granted.state.cycle.resolve_due_at(cst("2025-06-16 12:00")) == cst("2025-06-16 09:00")
    assert granted.state.cycle.resolve_due_at(cst("2025-06-17 10:00")) == cst("2025-06-30 18:00")
    twice = sla.on_update(granted.state, review("T1", cst("2025-06-18 10:00")), rules)
    assert isinstance(twice, Rejection) and twice.reason == "no_extension_request"


def test_a_refused_extension_leaves_the_deadline_and_allows_a_new_request(rules) -> None:  # type: ignore[no-untyped-def]
    from services.domain import scorecards

    state = _open(rules)  # resolve due 2025-06-16 09:00
    for step in (update("T1", "acknowledge", cst("2025-06-09 10:00")),
                 update("T1", "extend", cst("2025-06-10 10:00"), new_due=cst("2025-06-30 18:00"), reason="需协调"),
                 review("T1", cst("2025-06-10 15:00"), approved=False, reason="理由不充分")):
        result = sla.on_update(state, step, rules)
        assert isinstance(result, Applied), result
        state = result.state
    assert state.cycle.final_due == cst("2025-06-16 09:00") and state.cycle.extension_request is None
    assert [t.action for t in state.transitions][-1] == "review_extension"
    assert "refused" in (state.transitions[-1].note or "") and state.transitions[-1].reason == "理由不充分"
    state = sla.on_update(state, update("T1", "resolve", cst("2025-06-20 10:00")), rules).state
    card = scorecards.compute([state], cst("2025-07-01 00:00"))[0]
    assert card.resolved_on_time == 0  # resolved after the deadline the desk kept
    fresh = _open(rules)
    never = sla.on_update(fresh, review("T1", cst("2025-06-10 15:00")), rules)
    assert isinstance(never, Rejection) and never.reason == "no_extension_request"


def test_return_asks_for_redispatch_and_new_work_order_starts_a_cycle(rules) -> None:  # type: ignore[no-untyped-def]
    state = _open(rules)
    result = sla.on_update(state, update("T1", "return", cst("2025-06-09 12:00")), rules)
    assert isinstance(result, Applied) and result.redispatch and result.state.status is Status.returned
    again = sla.on_update(result.state, update("T1", "resolve", cst("2025-06-09 13:00")), rules)
    assert isinstance(again, Rejection)
    state = sla.on_work_order(result.state, work_order("T1", cst("2025-06-09 09:00"), unit="区房管局", seq=2,
                                                       dispatched_at=cst("2025-06-09 12:00")), rules)
    assert state.status is Status.dispatched and state.unit == "区房管局" and len(state.cycles) == 2
    assert state.cycles[0].ended_at == cst("2025-06-09 12:00")


def test_a_disputed_ticket_moves_from_returned_to_triage(rules) -> None:  # type: ignore[no-untyped-def]
    from schemas import TriageItem
    from tests.factories import decision

    state = _open(rules)
    state = sla.on_update(state, update("T1", "return", cst("2025-06-09 12:00")), rules).state
    item = TriageItem(ticket_id="T1", jurisdiction="qingpu", source="hotline_12345", urgency="normal",
                      opened_at=cst("2025-06-09 09:00"), content="违建", address="青浦", queue="区城运中心",
                      decision=decision("T1", outcome="triage", lead_unit=None, needs_triage=True,
                                        triage_reason="ownership_dispute"))
    moved = sla.on_triage(state, item)
    assert not isinstance(moved, Duplicate)
    assert moved.status is Status.triage and moved.unit is None
    assert moved.transitions[-1].reason == "ownership_dispute" and moved.transitions[-1].at == cst("2025-06-09 12:00")
    assert isinstance(sla.on_triage(moved, item), Duplicate)


# --- updates out of event-time order (派单 → 签收 → 办结 → 回访) ---------------------------------------------------


def _apply_all(state, updates, rules):  # type: ignore[no-untyped-def]
    """Apply ``updates`` in the order given, as a worker does; return the state and each result."""
    results = []
    for u in updates:
        result = sla.on_update(state, u, rules)
        results.append(result)
        if isinstance(result, Applied):
            state = result.state
    return state, results


def _consistent(state) -> None:  # type: ignore[no-untyped-def]
    """The status is the one the history leads to, and the cycle agrees with it."""
    assert [t.seq for t in state.transitions] == list(range(1, len(state.transitions) + 1))
    assert [t.at for t in state.transitions] == sorted(t.at for t in state.transitions)
    assert state.status is state.transitions[-1].to_status
    cycle = state.cycle
    if state.status in (Status.dispatched, Status.acknowledged, Status.reopened):
        assert cycle.resolved_at is None and cycle.ended_at is None
    if state.status is Status.resolved:
        assert cycle.resolved_at is not None


def test_a_resolve_dated_before_an_applied_acknowledgement_is_out_of_order(rules) -> None:  # type: ignore[no-untyped-def]
    """Was: the resolve applied (the ticket was acknowledged at arrival), the re-sorted history made the status
    'acknowledged' with resolved_at set, and the callback was then refused: the ticket could never close."""
    state = _open(rules)
    state = sla.on_update(state, update("T1", "acknowledge", cst("2025-06-09 10:00")), rules).state
    late = sla.on_update(state, update("T1", "resolve", cst("2025-06-09 09:30")), rules)
    assert isinstance(late, Rejection) and late.reason == "out_of_order" and late.field == "occurred_at"
    assert "2025-06-09T09:30:00+08:00" in late.error and "2025-06-09T10:00:00+08:00" in late.error
    assert state.status is Status.acknowledged and state.cycle.resolved_at is None
    for action, at, expected in (("resolve", "2025-06-09 10:30", Status.resolved),
                                 ("callback", "2025-06-10 10:00", Status.closed)):
        result = sla.on_update(state, update("T1", action, cst(at)), rules)
        assert isinstance(result, Applied), result
        state = result.state
        assert state.status is expected
        _consistent(state)


def test_a_callback_dated_before_the_resolve_is_out_of_order(rules) -> None:  # type: ignore[no-untyped-def]
    """Was: the unsatisfied callback opened a re-handling cycle, the re-sorted history left the status 'resolved',
    the re-handling cycle's resolve_overdue escalations fired, and a new resolve was refused."""
    from services.domain import deadlines

    state = _open(rules)
    for action, at in (("acknowledge", "2025-06-09 10:00"), ("resolve", "2025-06-10 10:00")):
        state = sla.on_update(state, update("T1", action, cst(at)), rules).state
    early = sla.on_update(state, update("T1", "callback", cst("2025-06-10 09:00"), satisfied=False, reason="x"),
                          rules)
    assert isinstance(early, Rejection) and early.reason == "out_of_order" and early.field == "occurred_at"
    assert state.status is Status.resolved and len(state.cycles) == 1
    assert [p for p in deadlines.scheduled(state, rules.policy_for(state), rules.calendar)
            if p.kind.value == "resolve_overdue"] == []
    result = sla.on_update(state, update("T1", "callback", cst("2025-06-11 09:00"), satisfied=False, reason="x"),
                           rules)
    assert isinstance(result, Applied) and result.state.status is Status.reopened
    again = sla.on_update(result.state, update("T1", "resolve", cst("2025-06-12 10:00")), rules)
    assert isinstance(again, Applied) and again.state.status is Status.resolved
    _consistent(again.state)


def test_two_extensions_give_the_same_deadline_whatever_their_arrival_order(rules) -> None:  # type: ignore[no-untyped-def]
    state = _open(rules)
    e1 = update("T1", "extend", cst("2025-06-12 10:00"), new_due=cst("2025-06-30 18:00"), reason="x")
    g1 = review("T1", cst("2025-06-12 12:00"))
    e2 = update("T1", "extend", cst("2025-06-11 10:00"), new_due=cst("2025-06-20 18:00"), reason="y")
    g2 = review("T1", cst("2025-06-11 12:00"))
    late_first, results = _apply_all(state, [e1, g1, e2, g2], rules)
    assert [r.reason for r in results[2:]] == ["out_of_order", "out_of_order"]  # type: ignore[union-attr]
    in_order, results = _apply_all(state, [e2, g2, e1, g1], rules)
    assert all(isinstance(r, Applied) for r in results)
    for s in (late_first, in_order):
        assert s.cycle.resolve_due_at(cst("2025-06-25 00:00")) == cst("2025-06-30 18:00")
        assert s.cycle.final_due == cst("2025-06-30 18:00")


def test_the_state_is_the_event_time_order_of_what_was_applied(rules) -> None:  # type: ignore[no-untyped-def]
    """Whatever order the updates arrive in, the state is the one the applied updates give in event-time order:
    no update is judged against a status it did not find at its own time."""
    import itertools

    state = _open(rules)
    updates = [update("T1", "acknowledge", cst("2025-06-09 10:00")),
               update("T1", "extend", cst("2025-06-10 10:00"), new_due=cst("2025-06-25 18:00"), reason="x"),
               review("T1", cst("2025-06-10 12:00")),
               update("T1", "resolve", cst("2025-06-11 10:00")),
               update("T1", "callback", cst("2025-06-12 10:00"), satisfied=False, reason="x"),
               update("T1", "resolve", cst("2025-06-13 10:00"))]
    for arrival in itertools.permutations(updates):
        final, results = _apply_all(state, arrival, rules)
        applied = [u for u, r in zip(arrival, results, strict=True) if isinstance(r, Applied)]
        by_time, again = _apply_all(state, sorted(applied, key=lambda u: u.occurred_at), rules)
        assert all(isinstance(r, Applied) for r in again), [u.action for u in arrival]
        assert final == by_time, [u.action for u in arrival]
        _consistent(final)
        for u, r in zip(arrival, results, strict=True):
            assert not isinstance(r, Rejection) or r.reason in ("out_of_order", "invalid_transition",
                                                                "no_extension_request"), r


def test_updates_of_the_same_instant_stay_in_the_order_they_were_applied(rules) -> None:  # type: ignore[no-untyped-def]
    """Was: ties were ordered by update id, so an acknowledgement 'b' and a resolution 'a' of the same second
    became resolve-then-acknowledge, status 'acknowledged' with resolved_at set."""
    state = _open(rules)
    at = cst("2025-06-09 10:00")
    state, results = _apply_all(state, [update("T1", "acknowledge", at, event_id="b-ack"),
                                        update("T1", "resolve", at, event_id="a-resolve"),
                                        update("T1", "callback", at, event_id="0-callback")], rules)
    assert all(isinstance(r, Applied) for r in results), results
    assert state.status is Status.closed
    assert [t.action for t in state.transitions] == ["dispatch", "acknowledge", "resolve", "callback"]
    _consistent(state)


def test_the_next_unit_may_act_at_the_instant_of_the_redispatch(rules) -> None:  # type: ignore[no-untyped-def]
    """The re-dispatch is dated at the return; the next unit's acknowledgement at that same instant is applied
    after it (was: sorted before the re-dispatch, leaving the ticket 'dispatched' with acked_at set)."""
    state = _open(rules)
    noon = cst("2025-06-09 12:00")
    state = sla.on_update(state, update("T1", "return", noon), rules).state
    state = sla.on_work_order(state, work_order("T1", cst("2025-06-09 09:00"), unit="区房管局", seq=2,
                                                dispatched_at=noon), rules)
    result = sla.on_update(state, update("T1", "acknowledge", noon, unit="区房管局"), rules)
    assert isinstance(result, Applied) and result.state.status is Status.acknowledged
    assert [t.action for t in result.state.transitions] == ["dispatch", "return", "dispatch", "acknowledge"]
    _consistent(result.state)


def test_a_late_arriving_update_applies_when_nothing_later_was_applied(rules) -> None:  # type: ignore[no-untyped-def]
    """Only the units' own updates count: a repeat report recorded later (a citizen's, not the unit's) and the
    dispatch do not make a correctly timed update out of order; it takes its place in the history by time."""
    from schemas import RepeatReport

    state = _open(rules)
    state = sla.on_update(state, update("T1", "acknowledge", cst("2025-06-09 09:00")), rules).state  # = dispatch
    report = RepeatReport(event_id="R1", ticket_id="T1", jurisdiction="qingpu", source="hotline_12345",
                          occurred_at=cst("2025-06-10 11:00"), similarity=0.9, content="违建", address="青浦")
    state = sla.on_repeat(state, report, rules)
    result = sla.on_update(state, update("T1", "resolve", cst("2025-06-10 10:30")), rules)
    assert isinstance(result, Applied) and result.state.status is Status.resolved
    assert [t.action for t in result.state.transitions] == ["dispatch", "acknowledge", "resolve", "repeat"]
    _consistent(result.state)


# --- 延期 must be requested within the time limit ---------------------------------------------------------------


def test_an_extension_after_the_deadline_is_refused(rules) -> None:  # type: ignore[no-untyped-def]
    """Was: an extension filed four days after the breach moved the deadline, and the scorecard counted the
    late resolution as on time while the overdue escalations stayed."""
    from services.domain import scorecards

    state = _open(rules)  # resolve due 2025-06-16 09:00
    state = sla.on_update(state, update("T1", "acknowledge", cst("2025-06-09 10:00")), rules).state
    late = sla.on_update(state, update("T1", "extend", cst("2025-06-20 10:00"), new_due=cst("2025-06-30 18:00"),
                                       reason="late"), rules)
    assert isinstance(late, Rejection) and late.reason == "extension_after_due" and late.field == "occurred_at"
    assert "2025-06-20T10:00:00+08:00" in late.error and "2025-06-16T09:00:00+08:00" in late.error
    state = sla.on_update(state, update("T1", "resolve", cst("2025-06-25 10:00")), rules).state
    assert state.cycle.final_due == cst("2025-06-16 09:00")
    card = scorecards.compute([state], cst("2025-07-01 00:00"))[0]
    assert card.resolved_on_time == 0 and card.ratio("on_time") == 0.0


def test_an_extension_up_to_the_deadline_in_force_is_granted(rules) -> None:  # type: ignore[no-untyped-def]
    state = _open(rules)  # resolve due 2025-06-16 09:00
    at_due = sla.on_update(state, update("T1", "extend", cst("2025-06-16 09:00"), new_due=cst("2025-06-20 18:00"),
                                         reason="x"), rules)
    assert isinstance(at_due, Applied)
    state = sla.on_update(at_due.state, review("T1", cst("2025-06-16 11:00")), rules).state
    # after the first deadline, but within the extended one: the deadline in force at that moment counts
    second = sla.on_update(state, update("T1", "extend", cst("2025-06-18 09:00"),
                                         new_due=cst("2025-06-27 18:00"), reason="y"), rules)
    assert isinstance(second, Applied)
    granted = sla.on_update(second.state, review("T1", cst("2025-06-18 10:00")), rules)
    assert isinstance(granted, Applied) and granted.state.cycle.final_due == cst("2025-06-27 18:00")
    past = sla.on_update(granted.state, update("T1", "extend", cst("2025-06-27 18:01"),
                                               new_due=cst("2025-07-04 18:00"), reason="z"), rules)
    assert isinstance(past, Rejection) and past.reason == "extension_after_due"


def test_a_rehandling_extension_is_judged_by_the_rehandling_deadline(rules) -> None:  # type: ignore[no-untyped-def]
    state = _open(rules)
    for action, at, kw in (("resolve", "2025-06-10 10:00", {}),
                           ("callback", "2025-06-11 10:00", {"satisfied": False, "reason": "没解决"})):
        state = sla.on_update(state, update("T1", action, cst(at), **kw), rules).state
    assert state.cycle.final_due == cst("2025-06-16 10:00")  # 3 working days (重办)
    late = sla.on_update(state, update("T1", "extend", cst("2025-06-16 10:01"), new_due=cst("2025-06-30 18:00"),
                                       reason="x"), rules)
    assert isinstance(late, Rejection) and late.reason == "extension_after_due"
    ok = sla.on_update(state, update("T1", "extend", cst("2025-06-13 10:00"), new_due=cst("2025-06-30 18:00"),
                                     reason="x"), rules)
    assert isinstance(ok, Applied)
