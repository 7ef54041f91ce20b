"""Urgent tickets: the 24 hours of the cited source, in natural hours (through nights, weekends and holidays)."""

from __future__ import annotations

from datetime import timedelta

from services.domain import sla
from tests.conftest import cst
from tests.factories import work_order


def test_an_urgent_ticket_is_due_24_natural_hours_after_dispatch(rules) -> None:  # type: ignore[no-untyped-def]
    """shared/domain.md (Beijing draft standard): water, power, gas, heating 24 h. Was 1 working day: an urgent
    water-supply ticket dispatched on the evening before the National Day holiday was due on 9 October."""
    policy = rules.policies.for_ticket(jurisdiction="qingpu", source="hotline_12345", category="water_supply",
                                       urgency="urgent")
    assert policy.name == "urgent-complaints"
    assert policy.resolve.describe() == "24 hours" and policy.ack.describe() == "2 hours"
    assert "24 h" in policy.citation and "[paraphrase]" in policy.citation
    for dispatched, due in (("2025-09-30 20:00", "2025-10-01 20:00"),  # into the National Day holiday
                            ("2025-06-13 17:00", "2025-06-14 17:00"),  # a Friday evening
                            ("2026-02-13 20:00", "2026-02-14 20:00")):
        state = sla.on_work_order(None, work_order("U1", cst(dispatched), urgency="urgent", category="water_supply"),
                                  rules)
        assert rules.policy_for(state).name == "urgent-complaints"
        assert state.cycle.ack_due == cst(dispatched) + timedelta(hours=2)
        assert state.cycle.final_due == cst(due), dispatched


def test_an_urgent_breach_reaches_the_centre_and_leadership_in_hours_not_after_the_holiday(rules) -> None:  # type: ignore[no-untyped-def]
    """Levels 2 and 3 of an urgent ticket follow its natural-hour limits. With the defaults' working days, an urgent
    ticket breached on 1 October reached the operations centre on 8 October and leadership on 14 October."""
    order = work_order("U1", cst("2025-09-30 20:00"), urgency="urgent", category="water_supply")
    state = sla.on_work_order(None, order, rules)
    state, found, _ = sla.sweep(state, cst("2025-10-03 00:00"), rules)
    got = sorted((e.kind.value, e.level, e.at) for e in found if e.kind.value.endswith("_overdue"))
    assert got == [("ack_overdue", 1, cst("2025-09-30 22:00")), ("ack_overdue", 2, cst("2025-10-01 00:00")),
                   ("resolve_overdue", 1, cst("2025-10-01 20:00")), ("resolve_overdue", 2, cst("2025-10-02 00:00")),
                   ("resolve_overdue", 3, cst("2025-10-02 20:00"))]


def test_an_urgent_iot_alert_reaches_leadership_24_hours_after_its_breach(rules) -> None:  # type: ignore[no-untyped-def]
    order = work_order("U1", cst("2025-09-30 20:00"), urgency="urgent", category="elevator_fault", source="iot_alert")
    state = sla.on_work_order(None, order, rules)
    assert rules.policy_for(state).name == "iot-alerts"
    state, found, _ = sla.sweep(state, cst("2025-10-03 00:00"), rules)
    levels = {e.level: e.at for e in found if e.kind.value == "resolve_overdue"}
    assert levels == {1: cst("2025-10-01 20:00"), 2: cst("2025-10-02 00:00"), 3: cst("2025-10-02 20:00")}


def _report(router, content: str, urgency: str = "normal"):  # type: ignore[no-untyped-def]
    from schemas import IntakeEvent
    from services.domain import dispatch

    event = IntakeEvent(event_id="QP-U", source="hotline_12345", jurisdiction="qingpu", occurred_at=cst("2025-06-09 09:00"),
                        content=content, address="上海市青浦区朱家角镇新风路100号", urgency=urgency)
    return dispatch.decide(None, event, router)


def test_the_router_raises_a_risk_to_life_the_sender_did_not_mark_urgent(router, rules) -> None:  # type: ignore[no-untyped-def]
    """Was: urgency came from the sender alone, so a caller's trapped lift marked normal got 1 working day to
    acknowledge. The rulebooks' urgent screen (common.yaml ``urgent``) raises it, says why and cites the source."""
    out = _report(router, "小区3号楼电梯困人了，里面关着一个老人，按警铃没人应")
    decision, order = out.decision, out.work_order
    assert decision is not None and order is not None and decision.outcome == "dispatch"
    assert decision.urgency == "urgent" and decision.urgent_terms == ["电梯困人"]
    assert decision.citations[-1] == router.library.common.urgent_citation
    assert decision.explanation.endswith("诉求含危及人身财产安全的用语「电梯困人」（common.urgent），按紧急诉求办理。")
    assert order.urgency == "urgent" and order.lead_unit == "区市场监管局"  # the owner is the lift's, as before
    state = sla.on_work_order(None, order, rules)
    assert rules.policy_for(state).name == "urgent-complaints"
    assert state.cycle.ack_due == cst("2025-06-09 11:00")  # 2 hours, not a working day


def test_the_urgent_screen_leaves_ownership_alone_and_skips_hedged_and_marked_reports(router) -> None:  # type: ignore[no-untyped-def]
    raised = _report(router, "新风路上有个窨井盖不见了，就剩一个黑窟窿，晚上根本看不见")
    plain = _report(router, "新风路上有个窨井盖不见了，就剩一个黑窟窿，晚上根本看不见", urgency="urgent")
    assert raised.decision.urgency == "urgent" and raised.work_order.urgency == "urgent"  # type: ignore[union-attr]
    # the sender's urgent stands as it is: the decision adds nothing, and decides ownership the same way
    assert plain.decision.urgency is None and plain.decision.urgent_terms == []  # type: ignore[union-attr]
    assert plain.work_order.urgency == "urgent"  # type: ignore[union-attr]
    same = ("outcome", "lead_unit", "cooperating_units", "rule_id", "matched_terms", "confidence", "candidates")
    assert {k: getattr(raised.decision, k) for k in same} == {k: getattr(plain.decision, k) for k in same}
    hedged = _report(router, "小区上个月电梯困人两次，这个月又坏了三次，要求彻底检修")  # a complaint, nobody trapped now
    assert hedged.decision.urgency is None and hedged.work_order.urgency == "normal"  # type: ignore[union-attr]
    triaged = _report(router, "隔壁独居老人联系不上，敲门也没人应")  # no rule places it: the desk gets it as urgent
    assert triaged.triage is not None and triaged.triage.urgency == "urgent"
    fire = _report(router, "家里着火了，火很大")  # an emergency is redirected; urgency is not its business
    assert fire.decision.outcome == "redirect" and fire.decision.urgency is None  # type: ignore[union-attr]


def test_a_ruling_keeps_the_raised_urgency(router) -> None:  # type: ignore[no-untyped-def]
    from schemas import Ruling
    from services.domain import dispatch

    out = _report(router, "隔壁独居老人联系不上，敲门也没人应")
    ruling = Ruling(ruling_id="R1", ticket_id="QP-U", desk="区城运中心", action="dispatch",
                    occurred_at=cst("2025-06-09 09:20"), rule_id="qingpu.street-lamp", reason="经核实为楼道灯不亮，老人无恙")
    ruled = dispatch.on_ruling(out.ticket, ruling, router)
    assert ruled.work_order is not None and ruled.work_order.urgency == "urgent"  # type: ignore[union-attr]
    assert ruled.decision.urgent_terms == ["独居老人联系不上"]  # type: ignore[union-attr]
