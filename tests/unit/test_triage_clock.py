"""The dispatch desk's own clock: a ticket waiting in triage (the router could not place it, or units dispute it)
escalates when the desk has not dispatched or closed it in time (policies.yaml ``defaults.triage``)."""

from __future__ import annotations

from typing import Any

from schemas import EscalationKind, Ruling
from services.domain import deadlines, dispatch, lifecycle, sla
from services.domain.tickets import TicketState
from services.domain.validation import Rejection
from tests.conftest import cst
from tests.factories import decision, repeat_report, reported, update, work_order

DESK = "区城运中心"  # qingpu's triage unit
TRIAGE = EscalationKind.triage_overdue


def _triaged(router: Any) -> tuple[dispatch.RouterOutput, TicketState]:
    out, state = reported(router)
    assert state.status.value == "triage"
    return out, state


def _ruled(router: Any, out: dispatch.RouterOutput, at: str, rules: Any, state: TicketState) -> TicketState:
    ruling = Ruling(ruling_id="R1", ticket_id="QP-1", desk=DESK, action="dispatch", occurred_at=cst(at),
                    rule_id="qingpu.street-lamp", reason="经核实为路灯故障")
    ruled = dispatch.on_ruling(out.ticket, ruling, router)
    assert not isinstance(ruled, Rejection) and ruled.work_order is not None
    after = sla.on_work_order(state, ruled.work_order, rules)
    assert isinstance(after, TicketState)
    return after


def _triage_escalations(state: TicketState, now: str, rules: Any) -> list[tuple[int, str, str | None]]:
    _, found, _ = sla.sweep(state, cst(now), rules)
    return [(e.level, e.at.isoformat(), e.unit) for e in found if e.kind is TRIAGE]


def test_a_ticket_left_in_triage_escalates_to_the_desk_then_up(router, rules) -> None:  # type: ignore[no-untyped-def]
    _, state = _triaged(router)
    # within the desk's 2 hours nothing is due; the next check is the deadline itself
    swept, found, upcoming = sla.sweep(state, cst("2025-06-09 10:59"), rules)
    assert found == [] and upcoming == cst("2025-06-09 11:00")
    assert sla.next_check(state, rules) == cst("2025-06-09 11:00")
    # 2 h: level 1, to the desk; 4 h later level 2; one working day after the deadline level 3
    swept, found, upcoming = sla.sweep(state, cst("2025-06-09 11:00"), rules)
    assert [(e.kind, e.level, e.unit, e.at) for e in found] == [(TRIAGE, 1, DESK, cst("2025-06-09 11:00"))]
    details = found[0].details
    assert details["triage_wait"] == 1 and details["in_triage_since"] == cst("2025-06-09 09:00").isoformat()
    assert details["triage_reason"] == "no_rule_matched" and details["audience"] == "responsible unit"
    assert "2 h" in details["policy_citation"] and details["deadline"] == cst("2025-06-09 11:00").isoformat()
    assert upcoming == cst("2025-06-09 15:00")
    # emitted once: the same sweep again finds nothing new
    assert sla.sweep(swept, cst("2025-06-09 11:30"), rules)[1] == []
    assert [(e.level, e.at) for e in sla.sweep(swept, cst("2025-06-10 12:00"), rules)[1]] == [
        (2, cst("2025-06-09 15:00")), (3, cst("2025-06-10 11:00"))]
    # the ids are the ticket's, the wait's and the level's: a redelivered input or another replica agrees
    again = sla.sweep(state, cst("2025-06-10 12:00"), rules)[1]
    assert [e.escalation_id for e in again] == [
        deadlines.escalation_id(TRIAGE.value, "QP-1", 1, level, None) for level in (1, 2, 3)]


def test_the_desks_ruling_stops_its_clock(router, rules) -> None:  # type: ignore[no-untyped-def]
    # ruled at the deadline: in time, nothing for the desk; the unit's clock starts
    out, state = _triaged(router)
    on_time = _ruled(router, out, "2025-06-09 11:00", rules, state)
    assert _triage_escalations(on_time, "2025-06-12 12:00", rules) == []
    # ruled between level 1 and level 2: level 1 stays (it was due), nothing after the ruling
    late = _ruled(router, out, "2025-06-09 13:00", rules, state)
    assert _triage_escalations(late, "2025-06-12 12:00", rules) == [(1, cst("2025-06-09 11:00").isoformat(), DESK)]
    # a desk's close stops it as well
    closing = Ruling(ruling_id="R2", ticket_id="QP-1", desk=DESK, action="close", occurred_at=cst("2025-06-09 10:00"),
                     reason="已告知办理渠道")
    closed = dispatch.on_ruling(out.ticket, closing, router)
    assert not isinstance(closed, Rejection) and closed.triage is not None
    closed_state = sla.on_triage(state, closed.triage)
    assert isinstance(closed_state, TicketState) and closed_state.status.value == "closed"
    assert sla.sweep(closed_state, cst("2025-06-12 12:00"), rules)[1] == []
    assert sla.next_check(closed_state, rules) is None


def test_each_dispute_is_a_new_wait_with_its_own_escalations(rules) -> None:  # type: ignore[no-untyped-def]
    """Units returned the ticket (退单) until it became an ownership dispute: it waits in triage again, and the
    second wait's escalations have their own ids."""
    start = cst("2025-06-09 09:00")
    state: Any = sla.on_work_order(None, work_order("T1", start), rules)
    returned = sla.on_update(state, update("T1", "return", cst("2025-06-09 10:00")), rules)
    assert isinstance(returned, lifecycle.Applied)
    dispute = decision("T1", outcome="triage", lead_unit=None, needs_triage=True, confidence=0.0,
                       triage_reason="ownership_dispute")
    waiting = lifecycle.apply_decision(returned.state, dispute, source="hotline_12345", urgency="normal",
                                       campaigns=[], opened_at=start)
    assert isinstance(waiting, TicketState) and waiting.status.value == "triage"
    assert deadlines.triage_waits(waiting) == [
        deadlines.TriageWait(1, cst("2025-06-09 10:00"), None, "ownership_dispute")]
    found = sla.sweep(waiting, cst("2025-06-09 12:30"), rules)[1]
    assert [(e.kind, e.level, e.unit, e.at) for e in found if e.kind is TRIAGE] == [
        (TRIAGE, 1, DESK, cst("2025-06-09 12:00"))]
    # the unit's clocks ended with its return: only the desk is asked
    assert {e.kind for e in found} == {TRIAGE}


def test_a_ticket_the_router_dispatched_has_no_triage_clock(rules) -> None:  # type: ignore[no-untyped-def]
    state: Any = sla.on_work_order(None, work_order("T2", cst("2025-06-09 09:00")), rules)
    assert deadlines.triage_waits(state) == []
    assert all(e.kind is not TRIAGE for e in sla.sweep(state, cst("2025-07-30 12:00"), rules)[1])


def test_an_urgent_ticket_gives_the_desk_thirty_minutes(router, rules) -> None:  # type: ignore[no-untyped-def]
    """Urgent tickets and IoT alerts have 2 h in all (policies.yaml): the desk's own clock is 30 minutes, with
    levels 2 and 3 one and four hours after it, whatever the working days."""
    for kw in ({"urgency": "urgent"}, {"source": "iot_alert"}):
        _, state = reported(router, at=cst("2025-06-07 09:00"), **kw)  # a Saturday: natural hours all the same
        assert state.status.value == "triage"
        assert sla.next_check(state, rules) == cst("2025-06-07 09:30")
        found = sla.sweep(state, cst("2025-06-07 14:00"), rules)[1]
        assert [(e.level, e.at, e.unit) for e in found if e.kind is TRIAGE] == [
            (1, cst("2025-06-07 09:30"), DESK), (2, cst("2025-06-07 10:30"), DESK), (3, cst("2025-06-07 13:30"), DESK)]
        assert "30 minutes" in found[0].details["policy_citation"]
    # an ordinary report keeps the 2 hours
    _, ordinary = reported(router, at=cst("2025-06-07 09:00"))
    assert sla.next_check(ordinary, rules) == cst("2025-06-07 11:00")


def test_a_redirect_the_desk_must_review_runs_the_desks_clock_until_it_rules(router, rules) -> None:  # type: ignore[no-untyped-def]
    """The fight went to 110 at 09:00; whether the site's noise needs a work order is the desk's to judge, on the
    same clock as triage. A plain redirect (nothing else in the report) gives the desk nothing to do."""
    out, state = reported(router, content="工地晚上施工噪音很大，还有工人打架吵闹")
    assert state.status.value == "redirected"
    assert _triage_escalations(state, "2025-06-09 10:59", rules) == []
    escalations = sla.sweep(state, cst("2025-06-09 11:00"), rules)[1]
    assert [(e.kind, e.level, e.unit) for e in escalations] == [(TRIAGE, 1, DESK)]
    assert escalations[0].details["triage_reason"] == "redirect_review"
    # ruled in time: a work order for the noise; the wait ends at the ruling and nothing falls due
    ruling = Ruling(ruling_id="R1", ticket_id="QP-1", desk=DESK, action="dispatch", occurred_at=cst("2025-06-09 10:00"),
                    rule_id="qingpu.construction-noise", reason="打架已转110；夜间施工噪音另派城管")
    ruled = dispatch.on_ruling(out.ticket, ruling, router)
    assert not isinstance(ruled, Rejection) and ruled.work_order is not None
    assert ruled.work_order.lead_unit == "区城管执法局"
    dispatched = sla.on_work_order(state, ruled.work_order, rules)
    assert isinstance(dispatched, TicketState)
    assert [(w.start, w.end, w.reason) for w in deadlines.triage_waits(dispatched)] == [
        (cst("2025-06-09 09:00"), cst("2025-06-09 10:00"), "redirect_review")]
    assert _triage_escalations(dispatched, "2025-06-12 12:00", rules) == []

    _, plain = reported(router, event_id="QP-2", content="有人持刀抢劫")
    assert plain.status.value == "redirected" and deadlines.triage_waits(plain) == []
    assert _triage_escalations(plain, "2025-06-12 12:00", rules) == []


def test_a_reviewed_redirect_is_urgent_as_its_words_and_a_repeat_meanwhile_is_no_repeat_after_close(
        router, rules) -> None:  # type: ignore[no-untyped-def]
    """The manhole cover a child fell into: the desk's review runs on the urgent clock (30 minutes), and a second
    caller while the desk holds the review is not a matter nobody holds."""
    out, state = reported(router, content="马路上有个窨井盖没了，有个小孩掉进窨井里了")
    assert out.decision.triage_reason == "redirect_review" and out.decision.urgency == "urgent"
    assert state.urgency == "urgent"
    assert _triage_escalations(state, "2025-06-09 09:30", rules) == [(1, cst("2025-06-09 09:30").isoformat(), DESK)]
    again = sla.on_repeat(state, repeat_report("QP-1R", cst("2025-06-09 09:10"), ticket="QP-1"), rules)
    assert isinstance(again, TicketState)
    kinds = {e.kind for e in sla.sweep(again, cst("2025-06-09 12:00"), rules)[1]}
    assert kinds == {TRIAGE}
    # the desk dispatches the cover's repair: the work order, and the ticket's clocks, are urgent
    ruling = Ruling(ruling_id="R1", ticket_id="QP-1", desk=DESK, action="dispatch", occurred_at=cst("2025-06-09 09:20"),
                    rule_id="qingpu.road-damage", reason="人员已由119救出；井盖缺失派建管委")
    ruled = dispatch.on_ruling(out.ticket, ruling, router)
    assert not isinstance(ruled, Rejection) and ruled.work_order is not None and ruled.work_order.urgency == "urgent"
    dispatched = sla.on_work_order(again, ruled.work_order, rules)
    assert isinstance(dispatched, TicketState) and dispatched.urgency == "urgent"


def test_a_plain_redirect_dispatched_by_the_desk_takes_the_work_orders_urgency(router, rules) -> None:  # type: ignore[no-untyped-def]
    """The desk dispatches a plain redirect; the ruling's decision raises it urgent (井盖不见了): the ticket's
    policy is then the urgent one, as the work order says."""
    out, state = reported(router, content="有人打架，旁边井盖不见了")
    assert out.decision.outcome == "redirect" and not out.decision.needs_triage and state.urgency == "normal"
    ruling = Ruling(ruling_id="R1", ticket_id="QP-1", desk=DESK, action="dispatch", occurred_at=cst("2025-06-09 09:20"),
                    rule_id="qingpu.road-damage", reason="打架已转110；井盖缺失派单")
    ruled = dispatch.on_ruling(out.ticket, ruling, router)
    assert not isinstance(ruled, Rejection) and ruled.work_order is not None
    dispatched = sla.on_work_order(state, ruled.work_order, rules)
    assert isinstance(dispatched, TicketState) and dispatched.urgency == ruled.work_order.urgency == "urgent"
