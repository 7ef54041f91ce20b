"""What a worker's /metrics exports before it has processed anything, and how it keeps its gauges current.

No broker and no database: a Faust app is built (it connects only when started) and the Runtime's metrics
are read from its registry, the bytes ``/metrics`` serves.
"""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace

import pytest
from faust.types import TP
from prometheus_client.parser import text_string_to_metric_families

from services.platform.metrics import Metrics
from services.platform.settings import Settings
from services.platform.worker import DEAD_LETTER_REASONS, Runtime, make_app
from tests.conftest import REPO

PORTS = {"intake": 9101, "router": 9102, "sla": 9103}


def runtime(service: str) -> Runtime:
    settings = Settings()
    return Runtime(service, make_app(service, settings, PORTS[service]), settings, Metrics())


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_dead_letter_reasons_are_the_documented_ones() -> None:
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| ([^|]+) \|", (REPO / "docs" / "rejections.md").read_text(encoding="utf-8"),
                      re.MULTILINE)
    documented = {reason for reason, stage in rows if "replay only" not in stage}
    assert len(documented) > 15
    assert set(DEAD_LETTER_REASONS) == documented
    assert len(DEAD_LETTER_REASONS) == len(set(DEAD_LETTER_REASONS))


@pytest.mark.parametrize("service", sorted(PORTS))
def test_a_fresh_worker_exports_every_dead_letter_reason_as_zero(service: str) -> None:
    """A labelled counter has no series until its first increment; a series born at 1 shows no increase() to
    HotlineInternalErrors. The worker declares them at start, so the first internal error is an increase."""
    exported = samples(runtime(service).metrics)
    for reason in DEAD_LETTER_REASONS:
        key = ("hotline_dead_letters_total", (("reason", reason), ("stage", service)))
        assert exported.get(key) == 0.0, key
    assert exported[("process_start_time_seconds", ())] > 0  # the rule's second clause needs the process age


def test_the_sla_worker_exports_its_deadline_escalations_as_zero(rules) -> None:  # type: ignore[no-untyped-def]
    """HotlineResolveOverdueSurge takes increase() of hotline_escalations_total: a series first seen above 0 (a sweep
    that raises many escalations between two scrapes) would show no increase, so the SLA worker declares them."""
    from schemas import Jurisdiction
    from services.sla import agents

    metrics = Metrics()
    agents.build(Settings(sla_port=PORTS["sla"]), rules, metrics)
    exported = samples(metrics)
    for jurisdiction in Jurisdiction:
        for level in ("1", "2", "3"):
            key = ("hotline_escalations_total",
                   (("jurisdiction", jurisdiction.value), ("kind", "resolve_overdue"), ("level", level)))
            assert exported.get(key) == 0.0, key


class FakeConsumer:
    """What report_lag asks of Faust's consumer: the assignment, high-water marks and positions."""

    def __init__(self) -> None:
        self.partitions: dict[TP, tuple[int, int]] = {}  # partition -> (high water, position)

    def assignment(self) -> set[TP]:
        return set(self.partitions)

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.partitions[tp][0] for tp in tps}

    async def position(self, tp: TP) -> int:
        return self.partitions[tp][1]


def test_consumer_lag_of_partitions_moved_away_goes_to_zero() -> None:
    """After a rebalance a replica must not keep reporting the lag of partitions another replica now owns
    (``sum by (service, topic)`` would count it twice and raise a false HotlineConsumerLag)."""
    rt = runtime("router")
    consumer = FakeConsumer()
    rt.app = SimpleNamespace(consumer=consumer)  # type: ignore[assignment]

    def lag() -> dict[str, float]:
        return {labels[1][1]: value for (name, labels), value in samples(rt.metrics).items()
                if name == "hotline_consumer_lag_messages"}

    accepted, returns = "hotline.events.accepted", "hotline.returns"
    consumer.partitions = {TP(accepted, 0): (900, 100), TP(accepted, 1): (700, 200), TP(returns, 0): (50, 40)}
    asyncio.run(rt.report_lag())
    assert lag() == {accepted: 1300, returns: 10}

    consumer.partitions = {TP(accepted, 1): (800, 300)}  # partition 0 of accepted and all of returns moved away
    asyncio.run(rt.report_lag())
    assert lag() == {accepted: 500, returns: 0}

    consumer.partitions = {}  # no partition at all (more replicas than partitions, or mid-rebalance)
    asyncio.run(rt.report_lag())
    assert lag() == {accepted: 0, returns: 0}

    consumer.partitions = {TP(returns, 0): (60, 60)}
    asyncio.run(rt.report_lag())
    assert lag() == {accepted: 0, returns: 0}


@pytest.mark.parametrize(("clock", "lateness", "exported"), [("wall", 600.0, 600.0), ("ticks", 600.0, 0.0)])
def test_the_sla_worker_exports_its_allowed_lateness(rules, clock, lateness, exported) -> None:  # type: ignore[no-untyped-def]
    """HotlineSlaClockStalled subtracts it: the wall-mode clock runs this far behind on purpose."""
    from services.sla import agents

    metrics = Metrics()
    agents.build(Settings(sla_clock=clock, sla_allowed_lateness_seconds=lateness), rules, metrics)
    assert metrics.registry.get_sample_value("hotline_sla_allowed_lateness_seconds") == exported
    assert metrics.registry.get_sample_value("hotline_sla_clock_timestamp_seconds") == 0  # until the first sweep
