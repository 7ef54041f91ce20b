"""The dispatch desk's rulings (人工派单 / 裁定): a triaged ticket gets a work order citing the rule the desk applies,
or is closed without one; a ruling that does not fit the ticket or the rulebook is refused with its field."""

from __future__ import annotations

import json
from typing import Any

from schemas import IntakeEvent, Ruling
from services.domain import dispatch, lifecycle, sla
from services.domain.validation import Rejection, decode
from tests.conftest import cst
from tests.factories import update

DESK = "区城运中心"  # qingpu's triage unit


def _event(content: str, address: str = "上海市青浦区朱家角镇新风路100号") -> IntakeEvent:
    return IntakeEvent(event_id="QP-1", source="hotline_12345", jurisdiction="qingpu",
                       occurred_at=cst("2025-06-09 09:00"), content=content, address=address)


def _ruling(**kw: Any) -> Ruling:
    base: dict[str, Any] = dict(ruling_id="R1", ticket_id="QP-1", desk=DESK, action="dispatch",
                                occurred_at=cst("2025-06-09 11:00"), rule_id="qingpu.street-lamp",
                                reason="经核实为路灯故障")
    return Ruling(**{**base, **kw})


def _triaged(router: Any, content: str = "路边有个东西坏了", **kw: Any) -> dispatch.RouterOutput:
    out = dispatch.decide(None, _event(content, **kw), router)
    assert out.triage is not None and out.ticket.in_triage
    return out


def test_a_dispatch_ruling_sends_the_work_order_the_rule_makes(router) -> None:  # type: ignore[no-untyped-def]
    ticket = _triaged(router).ticket
    out = dispatch.on_ruling(ticket, _ruling(), router)
    assert not isinstance(out, Rejection)
    order = out.work_order
    assert order is not None and order.work_order_id == "QP-1#1" and order.dispatched_at == cst("2025-06-09 11:00")
    assert order.lead_unit == "区建管委" and order.category == "street_lamp" and order.territorial_unit == "朱家角镇"
    decision = order.decision
    assert decision.rule_id == "qingpu.street-lamp" and decision.confidence == 1.0 and not decision.needs_triage
    rule = next(r for r in router.rulebook("qingpu").rules if r.id == "qingpu.street-lamp")
    assert decision.citations[0] == rule.citation
    assert decision.explanation.startswith(f"{DESK}人工派单（R1）：经核实为路灯故障；适用规则qingpu.street-lamp")
    assert not out.ticket.in_triage and out.ticket.current_unit == "区建管委" and out.ticket.rulings == ["R1"]
    assert out.decided_at == cst("2025-06-09 11:00") and out.decision_seq == 2  # the router's triage decision was 1
    # the same ruling again changes nothing; another one finds the ticket with its unit
    assert dispatch.on_ruling(out.ticket, _ruling(), router).duplicate  # type: ignore[union-attr]
    again = dispatch.on_ruling(out.ticket, _ruling(ruling_id="R2"), router)
    assert isinstance(again, Rejection) and (again.reason, again.field) == ("not_in_triage", "ticket_id")
    assert "区建管委" in again.error


def test_the_desk_may_name_another_lead_and_says_so(router) -> None:  # type: ignore[no-untyped-def]
    out = dispatch.on_ruling(_triaged(router).ticket, _ruling(lead_unit="朱家角镇"), router)
    assert not isinstance(out, Rejection) and out.work_order is not None
    assert out.work_order.lead_unit == "朱家角镇"
    assert "规则的牵头单位为区建管委，裁定改由朱家角镇牵头" in out.work_order.decision.explanation


def test_an_ownership_dispute_is_ruled_back_to_a_unit_that_returned_it(router) -> None:  # type: ignore[no-untyped-def]
    """A ruling is binding: the desk may send the ticket to a unit that returned it (裁定), as the next dispatch."""
    out = dispatch.decide(None, _event("小区物业不作为，楼道堆物没人管，物业费照收", "上海市青浦区新风路100号"), router)
    first = out.work_order
    assert first is not None
    ticket = out.ticket
    for k in range(2):
        back = dispatch.on_return(ticket, update("QP-1", "return", cst(f"2025-06-1{k} 12:00"),
                                                 unit=ticket.current_unit, event_id=f"RET{k}"), router)
        ticket = back.ticket
        if back.triage is not None:
            break
    assert back.triage is not None and back.triage.decision.triage_reason == "ownership_dispute"
    ruled = dispatch.on_ruling(ticket, _ruling(rule_id=first.decision.rule_id, reason="权属争议裁定",
                                               occurred_at=cst("2025-06-12 09:00")), router)
    assert not isinstance(ruled, Rejection) and ruled.work_order is not None
    assert ruled.work_order.lead_unit == first.lead_unit
    assert ruled.work_order.dispatch_seq == ticket.dispatch_seq + 1
    assert ruled.work_order.previous_units == ticket.tried_units and first.lead_unit in ticket.tried_units
    assert ruled.decision_seq == len(ticket.returns) + 2  # after the first decision and one per return


def test_a_close_ruling_ends_the_ticket_without_a_work_order(router) -> None:  # type: ignore[no-untyped-def]
    out = _triaged(router, "我想咨询一下社保卡怎么补办")
    closed = dispatch.on_ruling(out.ticket, _ruling(action="close", rule_id=None, reason="已告知社保咨询渠道"),
                                router)
    assert not isinstance(closed, Rejection)
    assert closed.work_order is None and closed.triage is not None and closed.escalations == []
    item = closed.triage
    assert item.decision.outcome == "close" and item.decided_at == cst("2025-06-09 11:00")
    assert "已告知社保咨询渠道" in item.decision.explanation
    assert not closed.ticket.in_triage

    # the SLA service: triage, then closed at the ruling's time; nothing a unit posts applies any more
    state = sla.on_triage(None, out.triage)  # type: ignore[arg-type]
    assert not isinstance(state, lifecycle.Duplicate) and state.status.value == "triage"
    state = sla.on_triage(state, item)
    assert not isinstance(state, lifecycle.Duplicate)
    assert state.status.value == "closed" and state.cycles == []
    last = state.transitions[-1]
    assert (last.action, last.at, last.from_status.value) == ("close", cst("2025-06-09 11:00"), "triage")  # type: ignore[union-attr]
    assert isinstance(sla.on_triage(state, item), lifecycle.Duplicate)  # redelivered
    # closed without a work order is not 办结: no campaign counts it as resolved (化解)
    assert not state.resolved_as_of(cst("2025-06-10 00:00")) and state.resolved_spans() == []


def test_a_dispatch_ruling_starts_the_units_clock_on_a_triaged_ticket(router, rules) -> None:  # type: ignore[no-untyped-def]
    out = _triaged(router)
    state = sla.on_triage(None, out.triage)  # type: ignore[arg-type]
    ruled = dispatch.on_ruling(out.ticket, _ruling(), router)
    assert not isinstance(ruled, Rejection) and ruled.work_order is not None
    state = sla.on_work_order(state, ruled.work_order, rules)  # type: ignore[arg-type]
    assert not isinstance(state, lifecycle.Duplicate)
    assert state.status.value == "dispatched" and state.unit == "区建管委"
    assert state.cycle is not None and state.cycle.start == cst("2025-06-09 11:00") and state.cycle.ack_due is not None
    result = sla.on_update(state, update("QP-1", "acknowledge", cst("2025-06-09 15:00"), unit="区建管委"), rules)
    assert isinstance(result, lifecycle.Applied) and result.state.status.value == "acknowledged"


def test_rulings_that_do_not_fit_are_refused_with_their_field(router) -> None:  # type: ignore[no-untyped-def]
    ticket = _triaged(router).ticket
    for ruling, reason, field in (
        (_ruling(desk="区城管执法局"), "not_the_desk", "desk"),
        (_ruling(rule_id="changning.street-lamp"), "unknown_rule", "rule_id"),
        (_ruling(lead_unit="区教育局不存在"), "unknown_unit", "lead_unit"),
    ):
        got = dispatch.on_ruling(ticket, ruling, router)
        assert isinstance(got, Rejection) and (got.reason, got.field) == (reason, field), ruling
    # a territorial rule needs a 街镇: from the address, or named by the desk
    no_town = _triaged(router, address="上海市青浦区某某路1号").ticket
    got = dispatch.on_ruling(no_town, _ruling(rule_id="qingpu.small-works"), router)
    assert isinstance(got, Rejection) and (got.reason, got.field) == ("no_lead", "lead_unit")
    named = dispatch.on_ruling(no_town, _ruling(rule_id="qingpu.small-works", lead_unit="夏阳街道"), router)
    assert not isinstance(named, Rejection) and named.work_order is not None
    assert named.work_order.lead_unit == "夏阳街道" and named.work_order.cooperating_units == ["区建管委"]


def test_the_contract_names_what_an_action_needs() -> None:
    body = json.loads(_ruling().model_dump_json())
    got = decode(Ruling, json.dumps({**body, "rule_id": None}).encode())
    assert isinstance(got, Rejection) and (got.reason, got.field) == ("invalid_value", "rule_id")
    got = decode(Ruling, json.dumps({**body, "action": "close"}).encode())
    assert isinstance(got, Rejection) and (got.reason, got.field) == ("invalid_value", "rule_id")
    got = decode(Ruling, json.dumps({k: v for k, v in body.items() if k != "reason"}).encode())
    assert isinstance(got, Rejection) and (got.reason, got.field) == ("missing_field", "reason")


def test_a_repeat_names_the_unit_holding_the_ticket_at_its_time_whatever_arrived_first(router, rules) -> None:  # type: ignore[no-untyped-def]
    """Streaming reads a repeat report (topic of events) before the ruling's work order when the repeat came first
    on the wire; the replay reads them in event time. Both must record the same history."""
    from services.domain.repeats import repeat_report

    out = _triaged(router)
    ruled = dispatch.on_ruling(out.ticket, _ruling(), router)
    assert not isinstance(ruled, Rejection) and ruled.work_order is not None
    later = _event("路边有个东西坏了，还是没人管").model_copy(update={"event_id": "QP-2",
                                                                 "occurred_at": cst("2025-06-10 09:00")})
    report = repeat_report(later, "QP-1", 0.8)
    triaged = sla.on_triage(None, out.triage)  # type: ignore[arg-type]
    histories = []
    for steps in (("order", "repeat"), ("repeat", "order")):
        state = triaged
        for step in steps:
            state = (sla.on_work_order(state, ruled.work_order, rules) if step == "order"  # type: ignore[arg-type]
                     else sla.on_repeat(state, report, rules))
        histories.append(state)
    assert histories[0] == histories[1]
    assert [(t.action, t.unit) for t in histories[0].transitions] == [  # type: ignore[union-attr]
        ("triage", None), ("dispatch", "区建管委"), ("repeat", "区建管委")]


def test_an_update_for_a_triaged_ticket_is_held_for_the_rulings_work_order(router, rules) -> None:  # type: ignore[no-untyped-def]
    """The unit reads the ruling's work order on its own topic and may answer before the SLA worker has read the
    copy on hotline.workorders: the answer waits (held) instead of being dead-lettered at once."""
    out = _triaged(router)
    state = sla.on_triage(None, out.triage)  # type: ignore[arg-type]
    ack = update("QP-1", "acknowledge", cst("2025-06-09 12:00"), unit="区建管委")
    refused = sla.on_update(state, ack, rules)  # type: ignore[arg-type]
    assert isinstance(refused, Rejection) and refused.reason == "invalid_transition"
    assert sla.may_be_early(state, ack, refused)  # type: ignore[arg-type]
    ruled = dispatch.on_ruling(out.ticket, _ruling(), router)
    assert not isinstance(ruled, Rejection) and ruled.work_order is not None
    dispatched = sla.on_work_order(state, ruled.work_order, rules)  # type: ignore[arg-type]
    applied = sla.on_update(dispatched, ack, rules)  # type: ignore[arg-type]
    assert isinstance(applied, lifecycle.Applied) and applied.state.status.value == "acknowledged"
    # a ticket the desk closed may be reopened by its dispatch ruling: the same answer waits for that work order too
    closed = sla.on_triage(state, dispatch.on_ruling(  # type: ignore[union-attr, arg-type]
        out.ticket, _ruling(action="close", rule_id=None, ruling_id="R9"), router).triage)
    refused = sla.on_update(closed, ack, rules)  # type: ignore[arg-type]
    assert isinstance(refused, Rejection) and sla.may_be_early(closed, ack, refused)  # type: ignore[arg-type]
    # a ticket closed after a satisfied callback is not waiting for anything: a unit's stray answer is refused at once
    done = applied.state
    for step in (update("QP-1", "resolve", cst("2025-06-10 12:00"), unit="区建管委"),
                 update("QP-1", "callback", cst("2025-06-11 09:00"), unit=DESK, satisfied=True)):
        result = sla.on_update(done, step, rules)
        assert isinstance(result, lifecycle.Applied)
        done = result.state
    late_ack = update("QP-1", "acknowledge", cst("2025-06-11 10:00"), unit="区建管委", event_id="U-LATE")
    refused = sla.on_update(done, late_ack, rules)
    assert isinstance(refused, Rejection) and not sla.may_be_early(done, late_ack, refused)


def test_the_desk_may_dispatch_a_ticket_the_emergency_screen_redirected(router, rules) -> None:  # type: ignore[no-untyped-def]
    """A keyword is not proof of an emergency in progress: the desk can give a redirected matter its owner."""
    out = dispatch.decide(None, _event("路灯不亮，刚才有人在路口打架"), router)
    assert out.decision is not None and out.decision.outcome == "redirect" and out.ticket.redirected
    assert not out.decision.needs_triage and not out.ticket.in_triage  # one phrase of a civic matter: no review
    got = dispatch.on_ruling(out.ticket, _ruling(action="close", rule_id=None, reason="已转110"), router)
    assert isinstance(got, Rejection) and got.reason == "not_in_triage" and "redirected" in got.error
    ruled = dispatch.on_ruling(out.ticket, _ruling(), router)
    assert not isinstance(ruled, Rejection) and ruled.work_order is not None
    assert ruled.work_order.lead_unit == "区建管委" and not ruled.ticket.redirected
    again = dispatch.on_ruling(ruled.ticket, _ruling(ruling_id="R2"), router)
    assert isinstance(again, Rejection) and again.reason == "not_in_triage"  # now a unit holds it
    # the SLA service: redirected, then dispatched at the ruling's time; the unit's updates apply
    state = sla.on_triage(None, out.triage)  # type: ignore[arg-type]
    assert not isinstance(state, lifecycle.Duplicate) and state.status.value == "redirected"
    answer = update("QP-1", "acknowledge", cst("2025-06-09 11:30"), unit="区建管委")
    early = sla.on_update(state, answer, rules)
    assert isinstance(early, Rejection) and sla.may_be_early(state, answer, early)  # held until the work order is read
    state = sla.on_work_order(state, ruled.work_order, rules)
    assert not isinstance(state, lifecycle.Duplicate)
    assert state.status.value == "dispatched" and state.cycle is not None
    assert state.cycle.start == cst("2025-06-09 11:00")


def test_a_return_after_the_desk_dispatched_a_redirect_looks_for_another_unit(router) -> None:  # type: ignore[no-untyped-def]
    """The desk judged the emergency words: a return re-dispatches to the next candidate, as for any ticket, instead
    of redirecting the ticket again (which then became an ownership dispute at the first return)."""
    out = dispatch.decide(None, _event("烧烤摊油烟很大，门口有人打架"), router)
    assert out.decision is not None and out.decision.redirect_to == "110"
    ruled = dispatch.on_ruling(out.ticket, _ruling(rule_id="qingpu.fumes-bbq", reason="油烟扰民，打架已转110"), router)
    assert not isinstance(ruled, Rejection) and ruled.work_order is not None
    assert ruled.work_order.lead_unit == "区城管执法局" and ruled.work_order.urgency == "normal"
    back = dispatch.on_return(ruled.ticket, update("QP-1", "return", cst("2025-06-09 12:00"), unit="区城管执法局",
                                                   event_id="RET1"), router)
    assert back.triage is None and back.escalations == [] and back.work_order is not None
    assert back.work_order.lead_unit == "区绿化市容局" and back.work_order.decision.redirect_to is None


def test_a_dispute_after_a_desk_dispatched_redirect_carries_none_of_the_redirects_fields(router) -> None:  # type: ignore[no-untyped-def]
    """A dispute's decision is built for the desk: no redirect, no emergency rule or citation, no confidence, the
    units' grounds and the candidates."""
    out = dispatch.decide(None, _event("路灯不亮，刚才有人在路口打架"), router)
    ruled = dispatch.on_ruling(out.ticket, _ruling(), router)
    assert not isinstance(ruled, Rejection) and ruled.work_order is not None
    back = dispatch.on_return(ruled.ticket, update("QP-1", "return", cst("2025-06-09 12:00"), unit="区建管委",
                                                   reason="路口打架应由公安处理", event_id="RET1"), router)
    assert back.triage is not None and back.ticket.in_triage and back.work_order is None
    d = back.triage.decision
    assert (d.outcome, d.triage_reason, d.redirect_to, d.lead_unit, d.confidence) == (
        "triage", "ownership_dispute", None, None, 0.0)
    assert d.rule_id == "qingpu.street-lamp" == d.candidates[0].rule_id and d.category == "street_lamp"
    assert d.citations == [router.library.common.triage_citation] and d.urgency is None
    assert d.explanation.startswith("权属争议：区建管委退单后没有其他候选单位，转派单台人工裁定。"
                                    "退单理由：区建管委：路口打架应由公安处理。候选规则：qingpu.street-lamp(")
    assert "朱家角镇" in d.explanation
    assert [e.kind.value for e in back.escalations] == ["ownership_dispute"]


def test_a_dispute_says_why_the_router_could_not_redispatch(router) -> None:  # type: ignore[no-untyped-def]
    out = dispatch.decide(None, _event("晚上渣土车开得飞快，沿途遗撒，路上全是泥，车斗也没盖篷布",
                                       "上海市青浦区赵巷镇沪青平公路"), router)
    assert out.work_order is not None and out.work_order.lead_unit == "区绿化市容局"
    back = dispatch.on_return(out.ticket, update("QP-1", "return", cst("2025-06-09 12:00"), unit="区绿化市容局",
                                                 event_id="RET1"), router)
    assert back.triage is not None  # the next candidate scores too little to be sent a work order
    assert back.triage.decision.explanation.startswith("权属争议：区绿化市容局退单后无法自动改派（low_confidence），")


def test_a_dispute_with_no_unit_left_says_so(router) -> None:  # type: ignore[no-untyped-def]
    out = dispatch.decide(None, _event("路灯坏了好几天，晚上很黑"), router)
    assert out.work_order is not None and out.work_order.lead_unit == "区建管委"
    back = dispatch.on_return(out.ticket, update("QP-1", "return", cst("2025-06-09 12:00"), unit="区建管委",
                                                 event_id="RET1"), router)
    assert back.triage is not None
    assert back.triage.decision.explanation.startswith("权属争议：区建管委退单后没有其他候选单位，")


def test_a_ruling_dated_before_its_ticket_is_refused_as_the_replay_would(router) -> None:  # type: ignore[no-untyped-def]
    """In event time the ticket did not exist yet: the replay finds no ticket, so streaming refuses it alike."""
    ticket = _triaged(router).ticket
    got = dispatch.on_ruling(ticket, _ruling(occurred_at=cst("2025-06-09 08:59")), router)
    assert isinstance(got, Rejection) and (got.reason, got.field) == ("unknown_ticket", "ticket_id")


def test_the_desks_own_updates_are_never_held(router, rules) -> None:  # type: ignore[no-untyped-def]
    """Each follows an update on the same partition (the unit's 办结 or 延期, or the desk's satisfied callback) that
    is applied or held before it: refused now, it stays refused, and is dead-lettered at once."""
    out = _triaged(router)
    triaged = sla.on_triage(None, out.triage)  # type: ignore[arg-type]
    for state in (None, triaged):
        for action, kw in (("callback", {"satisfied": True}), ("review_extension", {"approved": True}),
                           ("reopen", {"reason": "复核"})):
            step = update("QP-1", action, cst("2025-06-09 12:00"), unit=DESK, **kw)
            refused = sla.on_update(state, step, rules)  # type: ignore[arg-type]
            assert isinstance(refused, Rejection), refused
            assert not sla.may_be_early(state, step, refused)  # type: ignore[arg-type]
    ack = update("QP-1", "acknowledge", cst("2025-06-09 12:00"), unit="区建管委")  # a unit's: held
    assert sla.may_be_early(None, ack, sla.on_update(None, ack, rules))  # type: ignore[arg-type]


def test_the_desk_closes_a_reviewed_redirect_when_no_unit_must_act_besides(router, rules) -> None:  # type: ignore[no-untyped-def]
    """工人打架 went to 110 at once; the noise of the site is for the desk to judge. It closes the review."""
    out = dispatch.decide(None, _event("工地晚上施工噪音很大，还有工人打架吵闹"), router)
    assert out.decision is not None and out.triage is not None and out.ticket.in_triage and out.ticket.redirected
    state = sla.on_triage(None, out.triage)
    assert not isinstance(state, lifecycle.Duplicate) and state.status.value == "redirected"
    assert (state.transitions[0].reason, state.transitions[0].note) == ("110", "redirect_review")
    closing = _ruling(action="close", rule_id=None, reason="打架已由110处置，施工已停止，无需另行派单")
    closed = dispatch.on_ruling(out.ticket, closing, router)
    assert not isinstance(closed, Rejection) and closed.triage is not None and closed.work_order is None
    assert not closed.ticket.in_triage and not closed.ticket.redirected and closed.ticket.closed_at == closing.occurred_at
    after = sla.on_triage(state, closed.triage)
    assert not isinstance(after, lifecycle.Duplicate)
    assert after.status.value == "closed" and after.transitions[-1].at == closing.occurred_at
    again = dispatch.on_ruling(closed.ticket, _ruling(action="close", rule_id=None, ruling_id="R2"), router)
    assert isinstance(again, Rejection) and again.reason == "not_in_triage"
