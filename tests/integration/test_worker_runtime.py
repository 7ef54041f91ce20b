"""The worker runtime on a real PostgreSQL: a poison input in a batch ends as a dead letter, the rest commit, and
each input is counted once although its batch ran twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from services.platform import db
from services.platform.batch import Batch
from services.platform.codec import Outgoing
from services.platform.embedded import EmbeddedStack, free_port
from services.platform.metrics import Metrics
from services.platform.settings import Settings
from services.platform.worker import Runtime, make_app

pytestmark = pytest.mark.integration


def _event(offset: int, value: bytes) -> Any:
    return SimpleNamespace(value=value, message=SimpleNamespace(topic="hotline.events.accepted", partition=0,
                                                                offset=offset, headers=[], timestamp=None))


def test_poison_input_is_dead_lettered_and_the_batch_survives(tmp_path: Path) -> None:
    stack = EmbeddedStack(tmp_path)
    try:
        dsn = stack.start_database()

        async def go() -> None:
            await db.migrate(dsn)
            settings = Settings(database_url=dsn)
            rt = Runtime("router", make_app("router", settings, free_port()), settings, Metrics())
            published: list[Outgoing] = []

            async def publish(rows: list[tuple[int, Outgoing]]) -> None:
                published.extend(m for _, m in rows)
                await db.mark_published(await rt.pool(), [i for i, _ in rows])

            rt.publish = publish  # type: ignore[method-assign]

            counted: list[bytes] = []

            async def handle(batch: Batch, raw: bytes, m: Any) -> list[Outgoing]:
                batch.count(lambda: counted.append(raw))  # as the agents count their metrics
                if raw == b"poison":
                    raise ValueError("cannot digest this")
                await batch.conn.execute("INSERT INTO sla_clock (id, now) VALUES (1, now()) ON CONFLICT DO NOTHING")
                return [Outgoing("hotline.workorders", "k", raw, (("ce_id", raw),))]

            batch = [_event(0, b"a"), _event(1, b"poison"), _event(2, b"b")]
            await rt.process_batch(batch, handle)
            await rt.process_batch(batch, handle)  # redelivered: nothing new
            pool = await rt.pool()
            letters = await pool.fetch('SELECT reason, error, "offset" FROM dead_letters')
            assert [(r["reason"], r["offset"]) for r in letters] == [("internal_error", 1)]
            assert "cannot digest this" in letters[0]["error"]
            keys = sorted(r["input_key"] for r in await pool.fetch("SELECT input_key FROM processed_inputs"))
            assert keys == ["router:hotline.events.accepted:0:0", "router:hotline.events.accepted:0:1:failed",
                            "router:hotline.events.accepted:0:2"]
            assert sorted(m.value for m in published if m.topic == "hotline.workorders") == [b"a", b"b"]
            assert [m.topic for m in published].count("hotline.deadletter") == 1
            # "a" ran in the failed batch and again on its own; the poison's count went with its rollback
            assert counted == [b"a", b"b"]
            assert rt.metrics.registry.get_sample_value(
                "hotline_dead_letters_total", {"stage": "router", "reason": "internal_error"}) == 1
            # two batches of three taken (the second a redelivery), whatever became of their inputs
            sample = rt.metrics.registry.get_sample_value
            assert sample("hotline_batch_inputs_count", {"service": "router"}) == 2
            assert sample("hotline_batch_inputs_sum", {"service": "router"}) == 6
            assert sample("hotline_batch_inputs_bucket", {"service": "router", "le": "2.0"}) == 0
            assert sample("hotline_batch_inputs_bucket", {"service": "router", "le": "5.0"}) == 2
            await pool.close()

        asyncio.run(go())
    finally:
        stack.stop()
