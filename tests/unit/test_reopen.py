"""The dispatch desk reopens a closed ticket (复核重办): after a satisfied callback, with a ``reopen`` update that
sends it back to the unit that resolved it on the re-handling clock; after it closed the ticket itself, with a
dispatch ruling. Before, a closed ticket stayed closed: a caller reporting the matter again only raised
``repeat_after_close`` and the desk had no way to act on it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas import EscalationKind, Ruling
from services.domain import deadlines, dispatch, lifecycle, scorecards, sla
from services.domain.tickets import Status, TicketState
from services.domain.validation import Rejection
from tests.conftest import cst
from tests.factories import DESK, apply_all, decision, repeat_report, reported, update, work_order

UNIT = "区城管执法局"  # the factories' unit


def _closed(rules: Any) -> TicketState:
    """Dispatched Monday 9 June 2025, resolved Tuesday, closed after a satisfied callback on Wednesday."""
    state: Any = sla.on_work_order(None, work_order("T1", cst("2025-06-09 09:00")), rules)
    return apply_all(state, rules, update("T1", "acknowledge", cst("2025-06-09 10:00")),
                  update("T1", "resolve", cst("2025-06-10 16:00")), update("T1", "callback", cst("2025-06-11 09:00")))


def test_the_desk_reopens_a_closed_ticket_for_the_unit_that_resolved_it(rules: Any) -> None:
    closed = _closed(rules)
    assert closed.status is Status.closed and closed.resolved_as_of(cst("2025-06-12 00:00"))
    result = sla.on_update(closed, update("T1", "reopen", cst("2025-06-12 10:00"), event_id="RO1"), rules)
    assert isinstance(result, lifecycle.Applied)
    state = result.state
    assert state.status is Status.reopened and state.reopens == 1 and state.unit == UNIT
    assert (result.transition.action, result.transition.unit, result.transition.reason) == (
        "reopen", DESK, "市民再次来电：问题又出现了")
    first, fresh = state.cycles
    assert first.ended_at == cst("2025-06-12 10:00") and first.resolved_at == cst("2025-06-10 16:00")
    assert (fresh.kind, fresh.unit, fresh.start, fresh.ack_due) == ("reopen", UNIT, cst("2025-06-12 10:00"), None)
    assert fresh.final_due == cst("2025-06-17 10:00")  # 重办: 3 working days from Thursday
    # the campaigns no longer count it resolved; the re-handling clock escalates like any other
    assert not state.resolved_as_of(cst("2025-06-12 11:00")) and state.resolved_as_of(cst("2025-06-12 09:00"))
    overdue = [(e.kind, e.level, e.unit) for e in sla.sweep(state, cst("2025-06-17 10:00"), rules)[1]
               if e.kind is EscalationKind.resolve_overdue]
    assert overdue == [(EscalationKind.resolve_overdue, 1, UNIT)]
    # the unit resolves again, the desk calls back: closed again, and it may be reopened again
    again = apply_all(state, rules, update("T1", "resolve", cst("2025-06-13 10:00")),
                   update("T1", "callback", cst("2025-06-13 15:00")))
    assert again.status is Status.closed
    twice = sla.on_update(again, update("T1", "reopen", cst("2025-06-14 10:00"), event_id="RO2"), rules)
    assert isinstance(twice, lifecycle.Applied) and twice.state.reopens == 2 and len(twice.state.cycles) == 3
    # a reopen sent again is applied once
    assert isinstance(sla.on_update(state, update("T1", "reopen", cst("2025-06-12 10:00"), event_id="RO1"), rules),
                      lifecycle.Duplicate)


def test_only_the_desk_reopens_only_a_closed_ticket_and_says_why(rules: Any) -> None:
    closed = _closed(rules)
    own = sla.on_update(closed, update("T1", "reopen", cst("2025-06-12 10:00"), unit=UNIT), rules)
    assert isinstance(own, Rejection) and own.reason == "not_the_desk" and "复核重办" in own.error
    state: Any = sla.on_work_order(None, work_order("T2", cst("2025-06-09 09:00")), rules)
    resolved = apply_all(state, rules, update("T2", "resolve", cst("2025-06-10 16:00")))
    early = sla.on_update(resolved, update("T2", "reopen", cst("2025-06-11 10:00")), rules)
    assert isinstance(early, Rejection) and early.reason == "invalid_transition"  # the callback decides that
    before = sla.on_update(closed, update("T1", "reopen", cst("2025-06-11 08:00")), rules)
    assert isinstance(before, Rejection) and before.reason == "out_of_order"  # dated before the callback
    with pytest.raises(ValidationError, match="reason"):
        update("T1", "reopen", cst("2025-06-12 10:00"), reason=None)


def test_a_repeat_report_after_the_reopening_is_ordinary(rules: Any) -> None:
    """The repeat after closure goes to the desk; the desk reopens; further repeats reach the unit as usual,
    until the ticket is closed again."""
    state = apply_all(_closed(rules), rules, repeat_report("R1", cst("2025-06-11 15:00")),
                   update("T1", "reopen", cst("2025-06-11 16:00")), repeat_report("R2", cst("2025-06-12 09:00")),
                   update("T1", "resolve", cst("2025-06-12 15:00")), update("T1", "callback", cst("2025-06-13 09:00")),
                   repeat_report("R3", cst("2025-06-13 11:00")))
    after = deadlines.repeats_after_close(state)
    assert [(r.number, r.update_id, r.closed_at) for r in after] == [
        (1, "repeat:R1", cst("2025-06-11 09:00")), (2, "repeat:R3", cst("2025-06-13 09:00"))]


def test_a_reopening_counts_as_rehandling_on_the_units_scorecard(rules: Any) -> None:
    state = apply_all(_closed(rules), rules, update("T1", "reopen", cst("2025-06-12 10:00")))
    now = cst("2025-06-12 12:00")
    (score,) = scorecards.compute([state], now)
    assert (score.unit, score.resolved, score.callbacks, score.satisfied, score.reopened) == (UNIT, 1, 1, 1, 1)
    assert score.ratio("rehandle") == 1.0 and score.open == 1
    assert scorecards.tally(scorecards.unit_facts(state), now) == [score]
    assert scorecards.compute([state], cst("2025-06-12 09:00"))[0].reopened == 0  # not before it happened


def test_a_reopened_ticket_leaves_the_campaigns_resolved_count(rules: Any) -> None:
    """The campaigns count a ticket 化解 over its resolved spans (stored as facts): the reopening ends the span."""
    closed = _closed(rules)
    state = apply_all(closed, rules, update("T1", "reopen", cst("2025-06-12 10:00")))
    assert closed.resolved_spans() == [(cst("2025-06-10 16:00"), None)]
    assert state.resolved_spans() == [(cst("2025-06-10 16:00"), cst("2025-06-12 10:00"))]


def test_a_ticket_the_desk_closed_itself_is_reopened_by_its_dispatch_ruling(router: Any, rules: Any) -> None:
    closed, _, state = _desk_closed(router)
    assert closed.triage is not None and closed.triage.decided_at == cst("2025-06-09 10:00")
    assert closed.ticket.closed_at == cst("2025-06-09 10:00") and not closed.ticket.in_triage
    assert isinstance(state, TicketState) and state.status is Status.closed
    # there is no unit to reopen it for: the SLA service points the desk to its ruling
    reopen = update("QP-9", "reopen", cst("2025-06-09 16:00"))
    refused = sla.on_update(state, reopen, rules)
    assert isinstance(refused, Rejection) and refused.reason == "invalid_transition" and "dispatch ruling" in refused.error
    assert not sla.may_be_early(state, reopen, refused)  # the desk's own step: dead-lettered at once, not held

    def ruling(ruling_id: str, at: str, **kw: Any) -> Ruling:
        base: dict[str, Any] = dict(ruling_id=ruling_id, ticket_id="QP-9", desk=DESK, action="dispatch",
                                    occurred_at=cst(at), rule_id="qingpu.street-lamp", reason="市民再次来电，经核实为路灯故障")
        return Ruling(**{**base, **kw})

    again = dispatch.on_ruling(closed.ticket, ruling("R-again", "2025-06-09 16:00", action="close", rule_id=None), router)
    assert isinstance(again, Rejection) and again.reason == "not_in_triage" and "not close it again" in again.error
    early = dispatch.on_ruling(closed.ticket, ruling("R-early", "2025-06-09 09:30"), router)
    assert isinstance(early, Rejection) and (early.reason, early.field) == ("out_of_order", "occurred_at")
    reopened = dispatch.on_ruling(closed.ticket, ruling("R-open", "2025-06-09 16:00"), router)
    assert not isinstance(reopened, Rejection) and reopened.work_order is not None
    assert reopened.ticket.closed_at is None and reopened.ticket.current_unit == "区建管委"
    assert reopened.work_order.dispatch_seq == 1 and reopened.work_order.dispatched_at == cst("2025-06-09 16:00")
    # and the SLA service follows: a dispatched ticket on the unit's clocks; a repeat now is ordinary
    dispatched = sla.on_work_order(state, reopened.work_order, rules)
    assert isinstance(dispatched, TicketState) and dispatched.status is Status.dispatched
    later = apply_all(dispatched, rules, repeat_report("R1", cst("2025-06-09 18:00"), ticket="QP-9"))
    assert deadlines.repeats_after_close(later) == []
    # the unit may answer the ruling's work order before the SLA service has seen it: the answer is held
    ack = update("QP-9", "acknowledge", cst("2025-06-09 17:00"), unit="区建管委")
    early_ack = sla.on_update(state, ack, rules)
    assert isinstance(early_ack, Rejection) and sla.may_be_early(state, ack, early_ack)
    assert isinstance(sla.on_update(dispatched, ack, rules), lifecycle.Applied)


def test_a_ticket_closed_by_the_desk_after_a_dispute_is_not_reopened_for_the_unit_that_returned_it(rules: Any) -> None:
    """Its cycles ended in returns, not a 办结: there is nobody to send it back to, so the desk rules again."""
    state: Any = sla.on_work_order(None, work_order("T3", cst("2025-06-09 09:00")), rules)
    state = apply_all(state, rules, update("T3", "return", cst("2025-06-09 11:00"), unit=UNIT))
    disputed = decision("T3", outcome="triage", lead_unit=None, needs_triage=True, triage_reason="ownership_dispute")
    state = lifecycle.apply_decision(state, disputed, source="hotline_12345", urgency="normal", campaigns=[],
                                     opened_at=cst("2025-06-09 09:00"))
    close = decision("T3", outcome="close", lead_unit=None, explanation="已告知诉求人法定渠道")
    state = lifecycle.apply_decision(state, close, source="hotline_12345", urgency="normal", campaigns=[],
                                     opened_at=cst("2025-06-09 09:00"), decided_at=cst("2025-06-09 15:00"))
    assert isinstance(state, TicketState) and state.status is Status.closed and state.cycles
    refused = sla.on_update(state, update("T3", "reopen", cst("2025-06-10 09:00")), rules)
    assert isinstance(refused, Rejection) and refused.reason == "invalid_transition"
    assert "without a unit's 办结" in refused.error and "dispatch ruling" in refused.error
    reopen = update("T3", "reopen", cst("2025-06-10 09:00"))
    assert not sla.may_be_early(state, reopen, sla.on_update(state, reopen, rules))  # type: ignore[arg-type]
    ack = update("T3", "acknowledge", cst("2025-06-10 09:00"), unit="区房管局")  # may answer a ruling not seen yet
    assert sla.may_be_early(state, ack, sla.on_update(state, ack, rules))  # type: ignore[arg-type]


def _desk_closed(router: Any) -> tuple[Any, Any, TicketState]:
    """A triaged ticket the desk closed at 10:00: the router's output and ticket, and the SLA state."""
    out, state = reported(router, "QP-9")
    close = Ruling(ruling_id="R-close", ticket_id="QP-9", desk=DESK, action="close",
                   occurred_at=cst("2025-06-09 10:00"), reason="已当场答复")
    closed = dispatch.on_ruling(out.ticket, close, router)
    assert not isinstance(closed, Rejection)
    return closed, state, sla.on_triage(state, closed.triage)  # type: ignore[return-value, arg-type]


def _reopening(router: Any, closed: Any, at: str, ruling_id: str = "R-open") -> Any:
    ruling = Ruling(ruling_id=ruling_id, ticket_id="QP-9", desk=DESK, action="dispatch", occurred_at=cst(at),
                    rule_id="qingpu.street-lamp", reason="市民再次来电，经核实为路灯故障")
    out = dispatch.on_ruling(closed.ticket, ruling, router)
    assert not isinstance(out, Rejection) and out.work_order is not None
    return out


def test_the_close_and_the_reopening_work_order_give_one_history_in_either_order(router: Any, rules: Any) -> None:
    """Kafka does not order the triage topic and the work-order topic: the SLA service may read the reopening
    dispatch before the close it reopens. The close then takes its place before the dispatch, as in the replay
    (was: dropped as a redelivery, so streaming raised triage_overdue the replay did not, and no repeat_after_close)."""
    closed, triaged, in_order = _desk_closed(router)
    reopened = _reopening(router, closed, "2025-06-09 16:00")
    repeat = repeat_report("R1", cst("2025-06-09 13:00"), ticket="QP-9")
    first = sla.on_work_order(apply_all(in_order, rules, repeat), reopened.work_order, rules)
    dispatch_first = sla.on_work_order(apply_all(triaged, rules, repeat), reopened.work_order, rules)
    assert isinstance(dispatch_first, TicketState) and isinstance(first, TicketState)
    late_close = sla.on_triage(dispatch_first, closed.triage)
    assert late_close == first and first.status is Status.dispatched
    assert [(t.action, t.to_status.value) for t in first.transitions] == [
        ("triage", "triage"), ("close", "closed"), ("repeat", "closed"), ("dispatch", "dispatched")]
    assert [r.update_id for r in deadlines.repeats_after_close(first)] == ["repeat:R1"]
    assert deadlines.triage_waits(first)[0].end == cst("2025-06-09 10:00")
    assert isinstance(sla.on_triage(first, closed.triage), lifecycle.Duplicate)  # and once only


def test_a_ticket_closed_reopened_and_closed_again_keeps_both_closes(router: Any, rules: Any) -> None:
    """Each close has its own id (was one per ticket: the second overwrote the first in the audit trail), and a
    copy of the first close, relayed again while the ticket waits in triage once more, changes nothing."""
    closed, _, state = _desk_closed(router)
    reopened = _reopening(router, closed, "2025-06-09 16:00")
    state = sla.on_work_order(state, reopened.work_order, rules)  # type: ignore[assignment]
    returned = update("QP-9", "return", cst("2025-06-09 17:00"), unit="区建管委")
    state = apply_all(state, rules, returned)
    disputed = dispatch.on_return(reopened.ticket, returned, router, max_returns=1)
    assert disputed.triage is not None and disputed.ticket.in_triage
    state = sla.on_triage(state, disputed.triage)  # type: ignore[assignment]
    assert state.status is Status.triage
    assert isinstance(sla.on_triage(state, closed.triage), lifecycle.Duplicate)  # the first close, relayed again
    again = dispatch.on_ruling(disputed.ticket, Ruling(ruling_id="R-close2", ticket_id="QP-9", desk=DESK,
                                                       action="close", occurred_at=cst("2025-06-09 18:00"),
                                                       reason="非本级职责，已告知诉求人"), router)
    assert not isinstance(again, Rejection) and again.ticket.closed_at == cst("2025-06-09 18:00")
    state = sla.on_triage(state, again.triage)  # type: ignore[assignment, arg-type]
    closes = [t.update_id for t in state.transitions if t.action == "close"]
    assert state.status is Status.closed and len(closes) == 2 and len(set(closes)) == 2


def test_the_routers_close_time_is_not_before_the_return_that_disputed_the_ticket(router: Any) -> None:
    """The SLA service records a close no earlier than the ticket's last step; a reopening ruling the router
    accepts must come after that close there too."""
    closed, _, _ = _desk_closed(router)
    reopened = _reopening(router, closed, "2025-06-09 16:00")
    returned = update("QP-9", "return", cst("2025-06-09 17:00"), unit="区建管委")
    disputed = dispatch.on_return(reopened.ticket, returned, router, max_returns=1)
    ruled_earlier = Ruling(ruling_id="R-close2", ticket_id="QP-9", desk=DESK, action="close",
                           occurred_at=cst("2025-06-09 16:30"), reason="非本级职责")
    again = dispatch.on_ruling(disputed.ticket, ruled_earlier, router)
    assert not isinstance(again, Rejection) and again.ticket.closed_at == cst("2025-06-09 17:00")
    # a dispatch between the ruling's time and the return is refused
    ruling = Ruling(ruling_id="R-open2", ticket_id="QP-9", desk=DESK, action="dispatch",
                    occurred_at=cst("2025-06-09 16:45"), rule_id="qingpu.street-lamp", reason="再议")
    refused = dispatch.on_ruling(again.ticket, ruling, router)
    assert isinstance(refused, Rejection) and refused.reason == "out_of_order"


def test_a_moot_review_on_a_closed_ticket_does_not_move_its_closure(rules: Any) -> None:
    state: Any = sla.on_work_order(None, work_order("T1", cst("2025-06-09 09:00")), rules)
    state = apply_all(state, rules, update("T1", "extend", cst("2025-06-09 11:00"), new_due=cst("2025-06-30 18:00"),
                                        reason="需协调"),
                   update("T1", "resolve", cst("2025-06-10 16:00")), update("T1", "callback", cst("2025-06-11 09:00")),
                   update("T1", "review_extension", cst("2025-06-11 10:00"), approved=True),  # late: moot
                   repeat_report("R1", cst("2025-06-11 15:00")))
    (after,) = deadlines.repeats_after_close(state)
    assert (after.closed_at, after.ended_by) == (cst("2025-06-11 09:00"), "callback")
