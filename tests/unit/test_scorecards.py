from __future__ import annotations

from services.domain import sla
from services.domain.scorecards import compute
from tests.conftest import cst
from tests.factories import update, work_order


def _run(rules, ticket: str, steps, unit: str = "区城管执法局"):  # type: ignore[no-untyped-def]
    state = sla.on_work_order(None, work_order(ticket, cst("2025-06-09 09:00"), unit=unit), rules)
    for action, at, extra in steps:
        who = None if action == "callback" else unit  # the desk calls back
        state = sla.on_update(state, update(ticket, action, cst(at), unit=who, **extra), rules).state
    return state


def test_ratios_per_unit(rules) -> None:  # type: ignore[no-untyped-def]
    good = _run(rules, "A", [("acknowledge", "2025-06-09 10:00", {}), ("resolve", "2025-06-10 10:00", {}),
                             ("callback", "2025-06-11 10:00", {"satisfied": True})])
    late = _run(rules, "B", [("acknowledge", "2025-06-11 10:00", {}), ("resolve", "2025-06-20 10:00", {}),
                             ("callback", "2025-06-21 10:00", {"satisfied": False, "reason": "没修好"})])
    idle = _run(rules, "C", [])
    returned = _run(rules, "D", [("return", "2025-06-09 11:00", {})])
    [s] = compute([good, late, idle, returned], cst("2025-06-30 00:00"))
    assert (s.unit, s.dispatches) == ("区城管执法局", 4)
    assert s.ratio("response") == round(1 / 3, 6)  # A in time; B late; C never (deadline passed); D ended early
    assert s.ratio("on_time") == 0.5 and s.ratio("satisfaction") == 0.5 and s.ratio("rehandle") == 0.5
    assert s.ratio("return") == 0.25
    assert (s.open, s.overdue) == (2, 2)  # C untouched; B reopened with a 3-working-day clock long past
    assert s.ratio("resolution") == round(2 / 4, 6)


def test_nothing_counts_before_it_happened(rules) -> None:  # type: ignore[no-untyped-def]
    state = _run(rules, "A", [("acknowledge", "2025-06-09 10:00", {}), ("resolve", "2025-06-10 10:00", {})])
    [s] = compute([state], cst("2025-06-09 09:30"))
    assert (s.ack_judged, s.resolved, s.open) == (0, 0, 0)  # status is judged now; history only up to the instant
    assert s.ratio("response") is None
