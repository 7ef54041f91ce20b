"""Building contracts for tests without boilerplate."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas import Citation, RoutingDecision, UnitUpdate, WorkOrder

CITE = Citation(file="qingpu-2025-upgrade-work-plan.txt", clause="任务分解表 第19项")


def decision(ticket: str, unit: str = "区城管执法局", **kw: Any) -> RoutingDecision:
    base: dict[str, Any] = dict(event_id=ticket, jurisdiction="qingpu", outcome="dispatch",
                                category="illegal_construction", lead_unit=unit, confidence=0.9, needs_triage=False,
                                citations=[CITE], explanation="test", rulebook_version="test")
    return RoutingDecision(**{**base, **kw})


def work_order(ticket: str, at: datetime, unit: str = "区城管执法局", seq: int = 1, **kw: Any) -> WorkOrder:
    base: dict[str, Any] = dict(
        work_order_id=f"{ticket}#{seq}", ticket_id=ticket, dispatch_seq=seq, jurisdiction="qingpu",
        source="hotline_12345", category="illegal_construction", urgency="normal", lead_unit=unit,
        content="违建", address="上海市青浦区朱家角镇", opened_at=at, dispatched_at=at,
        decision=decision(ticket, unit))
    return WorkOrder(**{**base, **kw})


_n = 0


DESK = "区城运中心"  # qingpu's dispatch desk (its rulebook's triage_unit): it calls back and reviews extensions


def update(ticket: str, action: str, at: datetime, unit: str | None = None, **kw: Any) -> UnitUpdate:
    """An update of ``unit``; by default the unit holding the factories' tickets, or the desk for its actions."""
    global _n
    _n += 1
    extra: dict[str, Any] = {}
    if action == "return":
        extra["reason"] = "不属于本单位职责"
    if action == "callback":
        extra["satisfied"] = True
    if action == "review_extension":
        extra["approved"] = True
    if action == "reopen":
        extra["reason"] = "市民再次来电：问题又出现了"
    if unit is None:
        unit = DESK if action in ("callback", "review_extension", "reopen") else "区城管执法局"
    return UnitUpdate(event_id=kw.pop("event_id", f"U{_n}"), ticket_id=ticket, action=action, unit=unit,
                      occurred_at=at, **{**extra, **kw})


def review(ticket: str, at: datetime, approved: bool = True, **kw: Any) -> UnitUpdate:
    """The dispatch desk's review (延期审核) of the unit's pending extension."""
    return update(ticket, "review_extension", at, unit=DESK, approved=approved, **kw)


def reported(router: Any, event_id: str = "QP-1", content: str = "路边有个东西坏了",
             at: datetime | None = None, **kw: Any) -> tuple[Any, Any]:
    """A qingpu hotline report the router does not dispatch (by default: no rule matches, so it waits in triage),
    as the router's output and the SLA service's fresh state of the ticket; ``kw``: other fields of the event."""
    from schemas import IntakeEvent
    from services.domain import dispatch, sla
    from services.domain.tickets import TicketState
    from tests.conftest import cst

    fields: dict[str, Any] = {"source": "hotline_12345", "address": "上海市青浦区朱家角镇新风路100号", **kw}
    event = IntakeEvent(event_id=event_id, jurisdiction="qingpu", occurred_at=at or cst("2025-06-09 09:00"),
                        content=content, **fields)
    out = dispatch.decide(None, event, router)
    assert out.triage is not None
    state = sla.on_triage(None, out.triage)
    assert isinstance(state, TicketState)
    return out, state


def repeat_report(event_id: str, at: datetime, ticket: str = "T1") -> Any:
    """A repeat report (并单) of the same matter joining ``ticket``."""
    from schemas import RepeatReport

    return RepeatReport(event_id=event_id, ticket_id=ticket, jurisdiction="qingpu", source="hotline_12345",
                        occurred_at=at, similarity=0.8, content="违建又搭起来了", address="青浦")


def apply_all(state: Any, rules: Any, *inputs: Any) -> Any:
    """The SLA service's state after unit updates and repeat reports, each of which must apply."""
    from schemas import RepeatReport
    from services.domain import sla
    from services.domain.lifecycle import Applied
    from services.domain.tickets import TicketState

    for item in inputs:
        if isinstance(item, RepeatReport):
            out = sla.on_repeat(state, item, rules)
            assert isinstance(out, TicketState)
            state = out
        else:
            result = sla.on_update(state, item, rules)
            assert isinstance(result, Applied), result
            state = result.state
    return state
