"""What the router publishes for a decision: the unit copies go by the unit's topic code, and a unit the rulebooks
no longer list (renamed while it held a ticket) loses only its own copy, never the ticket's other messages.

No broker: a Faust app is built (it connects only when started) and ``_messages`` is called directly."""

from __future__ import annotations

from typing import Any

from schemas import IntakeEvent, RepeatReport
from services.domain import dispatch
from services.platform.metrics import Metrics
from services.platform.settings import Settings
from services.platform.worker import Runtime, make_app
from services.platform.batch import Batch
from services.router.agents import _messages
from tests.conftest import cst


class _Renamed:
    """The real router, except that ``unit`` has no topic code any more."""

    def __init__(self, router: Any, unit: str) -> None:
        self.router, self.unit = router, unit

    def unit_code(self, jurisdiction: str, unit: str) -> str:
        if unit == self.unit:
            raise KeyError(unit)
        return self.router.unit_code(jurisdiction, unit)  # type: ignore[no-any-return]


def test_a_repeat_for_a_ticket_whose_unit_lost_its_topic_still_reaches_the_sla_worker(router) -> None:  # type: ignore[no-untyped-def]
    event = IntakeEvent(event_id="QP-1", source="hotline_12345", jurisdiction="qingpu",
                        occurred_at=cst("2025-06-09 09:00"), content="小区门口路灯不亮了好几天",
                        address="上海市青浦区夏阳街道青湖路100号")
    decided = dispatch.decide(None, event, router)
    assert decided.work_order is not None
    report = RepeatReport(event_id="QP-2", ticket_id="QP-1", jurisdiction="qingpu", source="hotline_12345",
                          occurred_at=cst("2025-06-09 10:00"), content="路灯还是不亮", address=event.address,
                          similarity=0.8)
    out = dispatch.on_repeat(decided.ticket, report)
    settings = Settings()
    rt = Runtime("router", make_app("router", settings, 9102), settings, Metrics())
    unit = decided.work_order.lead_unit
    code = router.unit_code("qingpu", unit)
    batch = Batch(None)  # type: ignore[arg-type]  # counts only; no database is touched
    assert [m.topic for m in _messages(rt, batch, router, out)] == ["hotline.workorders", f"hotline.unit.{code}"]
    assert [m.topic for m in _messages(rt, batch, _Renamed(router, unit), out)] == ["hotline.workorders"]  # type: ignore[arg-type]
