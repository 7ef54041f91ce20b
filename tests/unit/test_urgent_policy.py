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
