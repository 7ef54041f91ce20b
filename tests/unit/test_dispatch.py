from __future__ import annotations

from schemas import IntakeEvent
from services.domain import dispatch
from tests.conftest import cst
from tests.factories import update


def _event(content: str, address: str = "上海市青浦区朱家角镇新风路100号", **kw) -> IntakeEvent:  # type: ignore[no-untyped-def]
    return IntakeEvent(event_id=kw.pop("event_id", "QP-1"), source="hotline_12345", jurisdiction="qingpu",
                       occurred_at=cst("2025-06-09 09:00"), content=content, address=address, **kw)


def test_decision_becomes_a_work_order_with_caller_and_citation(router) -> None:  # type: ignore[no-untyped-def]
    event = _event("隔壁在小区绿地上私搭乱建彩钢板房", caller={"name": "张三", "phone": "13812345678"})
    out = dispatch.decide(None, event, router)
    order = out.work_order
    assert order is not None and order.work_order_id == "QP-1#1" and order.dispatched_at == event.occurred_at
    assert order.caller is not None and order.caller.phone == "13812345678"
    assert order.decision.citations and order.decision.citations[0].file.endswith(".txt")
    assert order.territorial_unit == "朱家角镇"
    assert dispatch.decide(out.ticket, event, router).duplicate


def test_out_of_scope_goes_to_triage_without_caller(router) -> None:  # type: ignore[no-untyped-def]
    out = dispatch.decide(None, _event("我想咨询一下社保卡怎么补办", caller={"name": "李四", "phone": "13900000000"}),
                          router)
    assert out.work_order is None and out.triage is not None
    assert out.triage.decision.needs_triage and (out.triage.decision.triage_reason or "").startswith("out_of_scope")
    assert "caller" not in out.triage.model_dump()


def test_returns_redispatch_then_dispute(router) -> None:  # type: ignore[no-untyped-def]
    # two owners are plausible: the property (区房管局) and the sewer (区水务局)
    out = dispatch.decide(None, _event("我们小区的化粪池堵了往外冒，楼下面臭得没法走路，物业电话一直打不通"), router)
    first = out.work_order
    assert first is not None and first.lead_unit == "区房管局"
    back = dispatch.on_return(out.ticket, update("QP-1", "return", cst("2025-06-09 12:00"), unit=first.lead_unit),
                              router)
    second = back.work_order  # the next candidate, not the desk: the return is not yet a dispute
    assert second is not None and second.lead_unit == "区水务局"
    assert second.dispatch_seq == 2 and second.work_order_id == "QP-1#2"
    assert second.previous_units == [first.lead_unit] and second.dispatched_at == cst("2025-06-09 12:00")
    assert back.escalations == [] and back.triage is None
    final = dispatch.on_return(back.ticket, update("QP-1", "return", cst("2025-06-10 12:00"),
                                                   unit=second.lead_unit, reason="化粪池属小区物业管理范围" * 20), router)
    assert final.work_order is None and final.triage is not None
    assert final.triage.decision.triage_reason == "ownership_dispute"
    # the desk sees each unit's grounds in the triage item, a long one cut
    explanation = final.triage.decision.explanation
    assert "区房管局：不属于本单位职责" in explanation and "区水务局：化粪池属小区物业管理范围" in explanation
    assert "…" in explanation and explanation.count("化粪池属小区物业管理范围") < 20
    [dispute] = final.escalations
    assert dispute.kind.value == "ownership_dispute" and dispute.ticket_id == "QP-1" and dispute.level == 2


def test_a_redelivered_return_changes_nothing(router) -> None:  # type: ignore[no-untyped-def]
    out = dispatch.decide(None, _event("小区里有人私搭乱建彩钢板房"), router)
    ret = update("QP-1", "return", cst("2025-06-09 12:00"), unit=out.work_order.lead_unit)  # type: ignore[union-attr]
    once = dispatch.on_return(out.ticket, ret, router)
    assert dispatch.on_return(once.ticket, ret, router).duplicate
