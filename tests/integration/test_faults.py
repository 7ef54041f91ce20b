"""Faults on the real embedded broker and database: a router worker killed with SIGKILL in the middle of the
stream, another stopped with SIGTERM (a rolling deploy), and PostgreSQL stopped under load. Nothing is lost, nothing is duplicated, and the result equals the
offline replay of the same input. Sizes: HOTLINE_FAULT_EVENTS (default 1500 here; docs/reliability.md records
runs with 100,000) and HOTLINE_FAULT_DB_PAUSE seconds (default 30)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from services.demo.feeder import Feeder
from services.demo.sample import generate
from services.demo.stack import Running, start
from services.platform.embedded import wait_for_port
from services.replay.runner import run as replay
from tests.conftest import cst

EVENTS = int(os.environ.get("HOTLINE_FAULT_EVENTS", "1500"))
STALL = 180.0  # a wait fails when the pipeline makes no progress for this long (not on total time: size varies)
# pytest's per-test limit grows with the size (100,000 events take tens of minutes on a 2-core machine)
pytestmark = [pytest.mark.integration, pytest.mark.timeout(max(600, int(EVENTS * 0.05)))]
DB_PAUSE = float(os.environ.get("HOTLINE_FAULT_DB_PAUSE", "30"))
UNTIL = cst("2025-08-01 00:00")


async def _count(dsn: str, sql: str, *args: object) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def _wait_until(dsn: str, sql: str, target: int, stall: float) -> int:
    """Poll ``sql`` until it reaches ``target``; fail if it stops growing for ``stall`` seconds."""
    moved = time.monotonic()
    value = best = -1
    while time.monotonic() - moved < stall:
        try:
            value = await _count(dsn, sql)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            value = -1
        if value >= target:
            return value
        if value > best:
            best, moved = value, time.monotonic()
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{sql!r} stuck at {best} (target {target}) for {stall:.0f}s")


def _assert_equals_replay(running: Running, events: Path, router, rules) -> None:  # type: ignore[no-untyped-def]
    offline = replay(events, None, router, rules, until=UNTIL)

    async def rows() -> tuple[set[str], set[str], int, int]:
        conn = await asyncpg.connect(running.dsn)
        try:
            orders = {r["work_order_id"] for r in await conn.fetch("SELECT work_order_id FROM work_orders")}
            escalations = {r["escalation_id"] for r in await conn.fetch("SELECT escalation_id FROM escalations")}
            tickets = await conn.fetchval("SELECT count(*) FROM tickets")
            processed = await conn.fetchval("SELECT count(*) FROM processed_inputs WHERE input_key LIKE 'intake:%'")
            return orders, escalations, int(tickets), int(processed)
        finally:
            await conn.close()

    orders, escalations, tickets, processed = asyncio.run(rows())
    assert processed == len(events.read_bytes().split(b"\n")) - 1  # every raw message was processed
    assert orders == {w.work_order_id for w in offline.pipeline.work_orders}  # none lost, none extra
    assert escalations == {e.escalation_id for e in offline.pipeline.escalations}
    assert tickets == len(offline.pipeline.tickets)


async def _settle(running: Running) -> None:
    async with Feeder(running.settings, running.dsn) as feeder:
        await feeder.wait_quiescent(stall=STALL)
        await feeder.tick(UNTIL)
        await feeder.wait_quiescent(stall=STALL)


def _stop_one_of_two_routers(router, rules, tmp_path: Path, seed: int, stop: Callable[[Running], None]) -> None:  # type: ignore[no-untyped-def]
    """Two router workers in one consumer group; once a third of the events are routed, ``stop`` ends router-2;
    then the pipeline must settle on the replay's result."""
    sample = generate(router, n_events=EVENTS, seed=seed)
    events, *_ = sample.write(tmp_path / "input")
    running = start(tmp_path, router, sla_clock="ticks", services=("intake", "sla"))
    try:
        for name in ("router-1", "router-2"):
            running.stack.start_worker("router", running.env, name=name)
            wait_for_port(running.stack.ports[name], timeout=90)

        async def go() -> None:
            async with Feeder(running.settings, running.dsn) as feeder:
                await feeder.publish("raw", sample.events, "jurisdiction")
            routed = "SELECT count(*) FROM processed_inputs WHERE input_key LIKE 'router:%'"
            await _wait_until(running.dsn, routed, EVENTS // 3, stall=STALL)
            await asyncio.to_thread(stop, running)
            await _settle(running)

        asyncio.run(go())
        _assert_equals_replay(running, events, router, rules)
    finally:
        running.stop()


def test_router_killed_mid_stream_loses_and_duplicates_nothing(router, rules, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _stop_one_of_two_routers(router, rules, tmp_path, 31, lambda running: running.stack.kill_worker("router-2"))


def test_router_stopped_mid_stream_finishes_its_batch(router, rules, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A rolling deploy: SIGTERM to one of two routers under load. Faust acknowledges the batch in hand when its
    agent stops, and commits the offsets on the way out; the worker must finish that batch (its transaction and
    publish) before, or the inputs are acknowledged without having been processed."""
    def sigterm(running: Running) -> None:
        stopping = running.stack.workers.pop("router-2")
        os.killpg(stopping.pid, signal.SIGTERM)
        assert stopping.wait(60) == 0  # it stopped by itself, cleanly

    _stop_one_of_two_routers(router, rules, tmp_path, 33, sigterm)


def test_database_stopped_under_load_then_backlog_drains(router, rules, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sample = generate(router, n_events=EVENTS, seed=32)
    events, *_ = sample.write(tmp_path / "input")
    running = start(tmp_path, router, sla_clock="ticks")
    try:
        async def go() -> None:
            async with Feeder(running.settings, running.dsn) as feeder:
                half = len(sample.events) // 2
                await feeder.publish("raw", sample.events[:half], "jurisdiction")
                running.stack.pause_database()
                await feeder.publish("raw", sample.events[half:], "jurisdiction")  # Kafka keeps taking input
                await asyncio.sleep(DB_PAUSE)
                running.stack.resume_database()
            await _settle(running)

        asyncio.run(go())
        for name, proc in running.stack.workers.items():
            assert proc.poll() is None, f"{name} died while the database was down"
        _assert_equals_replay(running, events, router, rules)
    finally:
        running.stop()
