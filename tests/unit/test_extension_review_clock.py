"""The dispatch desk's review of a unit's extension request (延期审核) has a clock of its own: a request the desk
leaves unreviewed escalates to the desk (policies.yaml ``defaults.extension_review``), no later than the deadline
the unit asks to move."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas import EscalationKind
from services.domain import deadlines, lifecycle, sla
from services.domain.tickets import TicketState
from tests.conftest import cst
from tests.factories import DESK, review, update, work_order

REVIEW = EscalationKind.extension_review_overdue
DISPATCHED = cst("2025-06-09 09:00")  # a Monday; 5 working days: due Monday 16 June, 09:00


def _apply(state: TicketState, *updates: Any, rules: Any) -> TicketState:
    for u in updates:
        result = sla.on_update(state, u, rules)
        assert isinstance(result, lifecycle.Applied), result
        state = result.state
    return state


def _asked(at: datetime, rules: Any, event_id: str = "X1") -> TicketState:
    state: Any = sla.on_work_order(None, work_order("T1", DISPATCHED), rules)
    return _apply(state, update("T1", "acknowledge", cst("2025-06-09 10:00")),
                  update("T1", "extend", at, new_due=cst("2025-06-30 18:00"), reason="需协调多个部门",
                         event_id=event_id), rules=rules)


def _review_escalations(state: TicketState, now: str, rules: Any) -> list[tuple[int, datetime, str | None]]:
    return [(e.level, e.at, e.unit) for e in sla.sweep(state, cst(now), rules)[1] if e.kind is REVIEW]


def test_an_unreviewed_request_escalates_to_the_desk_then_up(rules) -> None:  # type: ignore[no-untyped-def]
    state = _asked(cst("2025-06-10 10:00"), rules)
    assert deadlines.extension_reviews(state) == [deadlines.ReviewWait(1, "X1", cst("2025-06-10 10:00"), None)]
    # one working day to review; then a working day to level 2 and three more to level 3
    assert _review_escalations(state, "2025-06-11 09:59", rules) == []
    swept, found, _ = sla.sweep(state, cst("2025-06-11 10:00"), rules)
    assert [(e.kind, e.level, e.unit, e.at) for e in found] == [(REVIEW, 1, DESK, cst("2025-06-11 10:00"))]
    details = found[0].details
    assert details["extension_request"] == "X1" and details["requested_at"] == cst("2025-06-10 10:00").isoformat()
    assert details["deadline"] == cst("2025-06-11 10:00").isoformat() and "延期" in details["policy_citation"]
    assert sla.sweep(swept, cst("2025-06-11 12:00"), rules)[1] == []  # emitted once
    assert _review_escalations(state, "2025-06-16 12:00", rules) == [
        (1, cst("2025-06-11 10:00"), DESK), (2, cst("2025-06-12 10:00"), DESK), (3, cst("2025-06-16 10:00"), DESK)]
    ids = [e.escalation_id for e in sla.sweep(state, cst("2025-06-16 12:00"), rules)[1] if e.kind is REVIEW]
    assert ids == [deadlines.escalation_id(REVIEW.value, "T1", "X1", level, None) for level in (1, 2, 3)]


def test_the_review_is_due_by_the_deadline_the_unit_asks_to_move(rules) -> None:  # type: ignore[no-untyped-def]
    # asked on Friday afternoon; the unit's deadline is Monday 09:00, before one working day has passed
    state = _asked(cst("2025-06-13 16:00"), rules)
    assert _review_escalations(state, "2025-06-16 09:30", rules) == [(1, cst("2025-06-16 09:00"), DESK)]
    overdue = [e for e in sla.sweep(state, cst("2025-06-16 09:30"), rules)[1]
               if e.kind is EscalationKind.resolve_overdue]
    assert [(e.level, e.at) for e in overdue] == [(1, cst("2025-06-16 09:00"))]  # the unit's deadline stands


def test_a_review_or_the_units_resolution_or_return_stops_the_clock(rules) -> None:  # type: ignore[no-untyped-def]
    asked = cst("2025-06-10 10:00")
    in_time = _apply(_asked(asked, rules), review("T1", cst("2025-06-11 10:00")), rules=rules)  # at the deadline
    assert _review_escalations(in_time, "2025-06-20 12:00", rules) == []
    late = _apply(_asked(asked, rules), review("T1", cst("2025-06-11 15:00"), approved=False), rules=rules)
    assert _review_escalations(late, "2025-06-20 12:00", rules) == [(1, cst("2025-06-11 10:00"), DESK)]
    resolved = _apply(_asked(asked, rules), update("T1", "resolve", cst("2025-06-10 16:00")), rules=rules)
    assert deadlines.extension_reviews(resolved) == [
        deadlines.ReviewWait(1, "X1", asked, cst("2025-06-10 16:00"))]
    assert _review_escalations(resolved, "2025-06-20 12:00", rules) == []
    # a return ends it too: the ticket goes to another unit, which asks for its own time if it needs it
    returned = sla.on_update(_asked(asked, rules), update("T1", "return", cst("2025-06-10 12:00")), rules)
    assert isinstance(returned, lifecycle.Applied) and returned.redispatch
    assert [w.end for w in deadlines.extension_reviews(returned.state)] == [cst("2025-06-10 12:00")]
    assert _review_escalations(returned.state, "2025-06-20 12:00", rules) == []


def test_each_request_has_its_own_clock_and_ids(rules) -> None:  # type: ignore[no-untyped-def]
    """Refused, the unit may ask again: the second request waits on its own clock, with ids of its own."""
    refused = _apply(_asked(cst("2025-06-10 10:00"), rules), review("T1", cst("2025-06-10 11:00"), approved=False),
                     rules=rules)
    again = _apply(refused, update("T1", "extend", cst("2025-06-12 10:00"), new_due=cst("2025-06-30 18:00"),
                                   reason="仍需协调", event_id="X2"), rules=rules)
    assert [(w.update_id, w.end) for w in deadlines.extension_reviews(again)] == [
        ("X1", cst("2025-06-10 11:00")), ("X2", None)]
    found = [e for e in sla.sweep(again, cst("2025-06-13 12:00"), rules)[1] if e.kind is REVIEW]
    assert [(e.level, e.at, e.details["extension_request"]) for e in found] == [(1, cst("2025-06-13 10:00"), "X2")]
    assert found[0].escalation_id == deadlines.escalation_id(REVIEW.value, "T1", "X2", 1, None)


def test_no_request_no_review_clock(rules) -> None:  # type: ignore[no-untyped-def]
    state: Any = sla.on_work_order(None, work_order("T2", DISPATCHED), rules)
    assert deadlines.extension_reviews(state) == []
    assert all(e.kind is not REVIEW for e in sla.sweep(state, cst("2025-07-30 12:00"), rules)[1])


def test_a_review_that_crosses_the_units_resolution_is_recorded_as_moot(rules) -> None:  # type: ignore[no-untyped-def]
    """Was: the unit resolved while its 延期 waited, the request stayed on the cycle and the desk's review, sent
    before it saw the 办结, was dead-lettered as an invalid transition. Now the request lapses at the 办结 and the
    review is kept in the history as moot: nothing granted or refused, no dead letter."""
    state = _asked(cst("2025-06-10 10:00"), rules)
    resolved = _apply(state, update("T1", "resolve", cst("2025-06-10 15:00")), rules=rules)
    assert resolved.cycle is not None and resolved.cycle.extension_request is None
    result = sla.on_update(resolved, review("T1", cst("2025-06-10 16:00")), rules)
    assert isinstance(result, lifecycle.Applied)
    after = result.state
    assert after.status is resolved.status and after.cycle == resolved.cycle  # the deadline did not move
    assert result.transition.action == "review_extension" and result.transition.unit == DESK
    assert result.transition.note == f"moot: X1 lapsed at {cst('2025-06-10 15:00').isoformat()} (resolve) before the review"
    assert deadlines.extension_reviews(after) == [deadlines.ReviewWait(1, "X1", cst("2025-06-10 10:00"),
                                                                       cst("2025-06-10 15:00"))]
    # the request is answered: another review of it is refused, and the callback still closes the ticket
    again = sla.on_update(after, review("T1", cst("2025-06-10 17:00")), rules)
    assert isinstance(again, lifecycle.Rejection) and again.reason == "invalid_transition"
    assert _apply(after, update("T1", "callback", cst("2025-06-11 09:00")), rules=rules).status.value == "closed"


def test_a_review_after_the_unit_returned_the_ticket_is_moot_too(rules) -> None:  # type: ignore[no-untyped-def]
    state = _asked(cst("2025-06-10 10:00"), rules)
    returned = _apply(state, update("T1", "return", cst("2025-06-10 11:00")), rules=rules)
    assert returned.cycle is not None and returned.cycle.extension_request is None
    result = sla.on_update(returned, review("T1", cst("2025-06-10 12:00"), approved=False), rules)
    assert isinstance(result, lifecycle.Applied) and result.state.status.value == "returned"
    assert result.transition.note is not None and "(return)" in result.transition.note
    # the next unit's cycle has no request of its own: a review there finds nothing to review or to record
    order = work_order("T1", DISPATCHED, unit="区房管局", seq=2, dispatched_at=cst("2025-06-10 13:00"))
    redispatched: Any = sla.on_work_order(result.state, order, rules)
    refused = sla.on_update(redispatched, review("T1", cst("2025-06-10 14:00")), rules)
    assert isinstance(refused, lifecycle.Rejection) and refused.reason == "no_extension_request"


def _next_unit_asks(rules) -> TicketState:  # type: ignore[no-untyped-def]
    """X1 lapses at the unit's 退单; the next unit gets the ticket and asks for X2."""
    state = _apply(_asked(cst("2025-06-10 10:00"), rules), update("T1", "return", cst("2025-06-10 11:00")), rules=rules)
    order = work_order("T1", DISPATCHED, unit="区房管局", seq=2, dispatched_at=cst("2025-06-10 13:00"))
    redispatched: Any = sla.on_work_order(state, order, rules)
    return _apply(redispatched, update("T1", "extend", cst("2025-06-10 14:00"), unit="区房管局", event_id="X2",
                                       new_due=cst("2025-07-15 18:00"), reason="需现场勘察"), rules=rules)


def test_a_late_review_of_a_lapsed_request_names_it_and_leaves_the_next_one_waiting(rules) -> None:  # type: ignore[no-untyped-def]
    """Was: a review names no request, so the desk's late review of X1 decided X2, the next unit's request. A review
    that names X1 (``extension_id``) is recorded as moot; X2 still waits, its clock runs on, and the review that
    names it decides it."""
    state = _next_unit_asks(rules)
    late = sla.on_update(state, review("T1", cst("2025-06-10 15:00"), extension_id="X1"), rules)
    assert isinstance(late, lifecycle.Applied) and late.transition.extension_id == "X1"
    assert late.transition.note == f"moot: X1 lapsed at {cst('2025-06-10 11:00').isoformat()} (return) before the review"
    assert late.state.cycles == state.cycles  # X2 is still pending and the deadline did not move
    assert late.state.cycle is not None and late.state.cycle.extension_request is not None
    assert deadlines.extension_reviews(late.state) == [
        deadlines.ReviewWait(1, "X1", cst("2025-06-10 10:00"), cst("2025-06-10 11:00")),
        deadlines.ReviewWait(2, "X2", cst("2025-06-10 14:00"), None)]
    assert _review_escalations(late.state, "2025-06-11 14:00", rules) == [(1, cst("2025-06-11 14:00"), DESK)]
    # X1 is answered now: naming it again is refused; the review of X2 decides X2
    again = sla.on_update(late.state, review("T1", cst("2025-06-10 15:30"), extension_id="X1"), rules)
    assert isinstance(again, lifecycle.Rejection) and (again.reason, again.field) == ("no_extension_request",
                                                                                      "extension_id")
    assert "answered it at" in again.error
    granted = _apply(late.state, review("T1", cst("2025-06-10 16:00"), extension_id="X2"), rules=rules)
    assert granted.cycle is not None and granted.cycle.final_due == cst("2025-07-15 18:00")
    assert granted.transitions[-1].extension_id == "X2" and granted.transitions[-1].note.startswith("granted X2")
    assert deadlines.extension_reviews(granted)[1].end == cst("2025-06-10 16:00")


def test_a_review_without_a_name_decides_the_request_waiting(rules) -> None:  # type: ignore[no-untyped-def]
    """Unchanged for senders that do not name the request (and reviews stored before they could): the review
    decides the one waiting, here X2, even if the desk meant X1. README says to name it."""
    decided = _apply(_next_unit_asks(rules), review("T1", cst("2025-06-10 15:00"), approved=False), rules=rules)
    assert decided.cycle is not None and decided.cycle.extension_request is None
    assert decided.transitions[-1].extension_id == "X2" and decided.transitions[-1].note.startswith("refused X2")


def test_a_review_naming_no_request_of_the_ticket_is_refused(rules) -> None:  # type: ignore[no-untyped-def]
    state = _asked(cst("2025-06-10 10:00"), rules)
    refused = sla.on_update(state, review("T1", cst("2025-06-10 12:00"), extension_id="X9"), rules)
    assert isinstance(refused, lifecycle.Rejection)
    assert (refused.reason, refused.field) == ("no_extension_request", "extension_id") and "no such" in refused.error


def test_a_review_of_a_request_that_lapsed_when_the_ticket_went_to_triage_is_moot(rules) -> None:  # type: ignore[no-untyped-def]
    """Was: the ticket waits in triage after the unit's 退单, so the desk's late review was refused as an invalid
    transition (held by the streaming worker, then dead-lettered). It is recorded as moot like any other."""
    from schemas import TriageItem
    from tests.factories import decision

    state = _apply(_asked(cst("2025-06-10 10:00"), rules), update("T1", "return", cst("2025-06-10 11:00")), rules=rules)
    item = TriageItem(ticket_id="T1", jurisdiction="qingpu", source="hotline_12345", urgency="normal",
                      opened_at=DISPATCHED, content="违建", address="青浦", queue=DESK,
                      decision=decision("T1", outcome="triage", lead_unit=None, needs_triage=True,
                                        triage_reason="ownership_dispute"))
    triaged: Any = sla.on_triage(state, item)
    assert triaged.status.value == "triage"
    for named in (None, "X1"):
        result = sla.on_update(triaged, review("T1", cst("2025-06-10 12:00"), extension_id=named), rules)
        assert isinstance(result, lifecycle.Applied), result
        assert result.state.status.value == "triage" and result.transition.extension_id == "X1"
        assert result.transition.note is not None and result.transition.note.startswith("moot: X1")
    # a review from anyone but the desk is still refused, and an update of a unit still waits for the dispatch
    other = sla.on_update(triaged, update("T1", "review_extension", cst("2025-06-10 12:00"), unit="区城管执法局"),
                          rules)
    assert isinstance(other, lifecycle.Rejection) and other.reason == "not_the_desk"
    stray = sla.on_update(triaged, update("T1", "resolve", cst("2025-06-10 12:00")), rules)
    assert isinstance(stray, lifecycle.Rejection) and stray.reason == "invalid_transition"


def _returned_then(rules, *later: Any) -> TicketState:  # type: ignore[no-untyped-def]
    return _apply(_asked(cst("2025-06-10 10:00"), rules), update("T1", "return", cst("2025-06-10 11:00")), *later,
                  rules=rules)


def _disputed(state: TicketState) -> Any:
    from tests.factories import decision

    return lifecycle.apply_decision(state, decision("T1", outcome="triage", lead_unit=None, needs_triage=True,
                                                    triage_reason="ownership_dispute"),
                                    source="hotline_12345", urgency="normal", campaigns=[], opened_at=DISPATCHED)


def test_a_moot_review_gives_one_history_whichever_input_comes_first(rules) -> None:  # type: ignore[no-untyped-def]
    """Kafka orders neither the triage item nor the ruling's work order with the desk's review: each order of
    arrival gives the replay's history (event-time order). Found in review: the review read after a re-dispatch
    dated later was refused before_dispatch, and a triage item read after the review started the desk's clock at
    the review instead of the return."""
    late = review("T1", cst("2025-06-10 11:30"), extension_id="X1")
    order = work_order("T1", DISPATCHED, unit="区房管局", seq=2, dispatched_at=cst("2025-06-10 11:31"))
    returned = _returned_then(rules)
    triaged = _disputed(returned)
    in_time = sla.on_work_order(_apply(triaged, late, rules=rules), order, rules)
    review_last = _apply(sla.on_work_order(triaged, order, rules), late, rules=rules)  # type: ignore[arg-type]
    triage_last = sla.on_work_order(_disputed(_apply(returned, late, rules=rules)), order, rules)
    for history in (review_last, triage_last):
        assert history == in_time
    assert [(t.action, t.at) for t in review_last.transitions][-4:] == [
        ("return", cst("2025-06-10 11:00")), ("triage", cst("2025-06-10 11:00")),
        ("review_extension", cst("2025-06-10 11:30")), ("dispatch", cst("2025-06-10 11:31"))]
    assert deadlines.triage_waits(review_last) == [deadlines.TriageWait(1, cst("2025-06-10 11:00"),
                                                                        cst("2025-06-10 11:31"), "ownership_dispute")]


def test_a_named_review_is_answered_by_name_in_triage_too(rules) -> None:  # type: ignore[no-untyped-def]
    triaged = _disputed(_returned_then(rules, review("T1", cst("2025-06-10 12:00"), extension_id="X1")))
    for named, why in (("X9", "no such request"), ("X1", "answered it at")):
        refused = sla.on_update(triaged, review("T1", cst("2025-06-10 13:00"), extension_id=named), rules)
        assert isinstance(refused, lifecycle.Rejection), refused
        assert (refused.reason, refused.field) == ("no_extension_request", "extension_id") and why in refused.error
        assert not sla.may_be_early(triaged, review("T1", cst("2025-06-10 13:00")), refused)


def test_a_state_stored_before_reviews_named_their_request_loads(rules) -> None:  # type: ignore[no-untyped-def]
    """Transitions stored without ``extension_id``: an unnamed review answered the latest request."""
    state = _apply(_asked(cst("2025-06-10 10:00"), rules), review("T1", cst("2025-06-10 12:00")), rules=rules)
    raw = state.model_dump(mode="json")
    for t in raw["transitions"]:
        del t["extension_id"]
    old = TicketState.model_validate(raw)
    assert deadlines.extension_reviews(old) == deadlines.extension_reviews(state) == [
        deadlines.ReviewWait(1, "X1", cst("2025-06-10 10:00"), cst("2025-06-10 12:00"))]
