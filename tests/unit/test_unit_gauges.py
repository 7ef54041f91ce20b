"""The SLA worker's per-unit gauges follow each scorecard refresh, including units that drop out of it."""

from __future__ import annotations

from services.domain.scorecards import UnitScore
from services.platform.metrics import Metrics

UNIT = {"jurisdiction": "qingpu", "unit": "区城管执法局"}


def _value(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name, UNIT)


def test_a_unit_that_drops_out_of_the_refresh_shows_no_work_and_no_stale_ratio() -> None:
    """An overdue ticket opened before the scorecard window keeps its unit in the refresh only while it is open;
    once resolved the unit is no longer listed, and its overdue gauge stood at 1 (HotlineUnitOverdueWork firing)
    until the worker restarted."""
    metrics = Metrics()
    metrics.show_unit_scores([UnitScore("qingpu", "区城管执法局", dispatches=1, resolve_judged=1, callbacks=2,
                                        satisfied=1, open=1, overdue=1)])
    assert _value(metrics, "hotline_work_orders_overdue") == 1 and _value(metrics, "hotline_work_orders_open") == 1
    assert _value(metrics, "hotline_unit_satisfaction_ratio") == 0.5
    assert _value(metrics, "hotline_unit_resolution_ratio") == 0.0
    metrics.show_unit_scores([UnitScore("qingpu", "区城管执法局", dispatches=1, resolve_judged=1, resolved=1, open=1,
                                        overdue=1)])
    assert _value(metrics, "hotline_unit_satisfaction_ratio") is None  # no callback left in the window
    assert _value(metrics, "hotline_unit_resolution_ratio") == 1.0
    metrics.show_unit_scores([UnitScore("qingpu", "区房管局", open=2)])
    assert _value(metrics, "hotline_work_orders_overdue") == 0 and _value(metrics, "hotline_work_orders_open") == 0
    assert _value(metrics, "hotline_unit_resolution_ratio") is None
    assert metrics.registry.get_sample_value("hotline_work_orders_open",
                                             {"jurisdiction": "qingpu", "unit": "区房管局"}) == 2
