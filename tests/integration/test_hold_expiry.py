"""A held input's expiry on the real broker: the SLA worker notes where the ticket-opening topics end (Kafka's
ListOffsets, through its own consumer) and dead-letters an update whose ticket never comes once its hold has run
out and it has read them that far (migration 005; tests/integration/test_held_inputs.py drives the same code
without a broker, ordering the deliveries by hand)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import asyncpg
import pytest

from services.demo.feeder import Feeder
from services.demo.stack import start
from services.replay.pipeline import Pipeline

pytestmark = pytest.mark.integration


def test_an_update_whose_ticket_never_comes_waits_for_the_broker_then_expires(
        router, rules, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    offline = Pipeline(router=router, rules=rules)  # the work order of another ticket, ahead on its topic
    offline.event(json.dumps({"event_id": "QP-1", "source": "hotline_12345", "jurisdiction": "qingpu",
                              "occurred_at": "2025-05-06T09:00:00+08:00", "content": "小区门口路灯不亮了好几天晚上很黑",
                              "address": "上海市青浦区夏阳街道青湖路100号"}, ensure_ascii=False).encode(),
                  origin="t", offset=0, received_at=datetime(2025, 5, 6, 1, 0, tzinfo=UTC))
    order = offline.work_orders[0].model_dump_json().encode()
    monkeypatch.setenv("HOTLINE_HOLD_SECONDS", "2")
    running = start(tmp_path, router, sla_clock="wall", services=("sla",), partitions=2)
    update = json.dumps({"event_id": "U-1", "ticket_id": "NOPE", "unit": "区建管委", "action": "acknowledge",
                         "occurred_at": "2025-05-06T09:00:00+08:00"}, ensure_ascii=False).encode()
    try:
        async def go() -> tuple[object, list[str], int]:
            conn = await asyncpg.connect(running.dsn)
            try:
                async with Feeder(running.settings, running.dsn) as feeder:
                    await feeder.producer.send_and_wait("hotline.workorders", order, key=b"QP-1")  # as the router
                    await feeder.publish("updates", [update], "ticket_id")
                waits_for: object = None
                deadline = asyncio.get_running_loop().time() + 60
                while asyncio.get_running_loop().time() < deadline:
                    letters = [r["reason"] for r in await conn.fetch("SELECT reason FROM dead_letters")]
                    if letters:
                        break
                    row = await conn.fetchrow("SELECT waits_for FROM held_inputs WHERE ticket_id = 'NOPE'")
                    if row is not None and row["waits_for"] is not None:
                        waits_for = json.loads(row["waits_for"])
                    await asyncio.sleep(0.2)
                held = await conn.fetchval("SELECT count(*) FROM held_inputs")
                return waits_for, letters, int(held)
            finally:
                await conn.close()

        waits_for, letters, held = asyncio.run(go())
        assert isinstance(waits_for, dict)  # every partition of both topics; the work order's holds 1
        assert sorted(waits_for) == [f"hotline.{topic}/{p}" for topic in ("triage", "workorders") for p in range(2)]
        assert sorted(waits_for.values()) == [0, 0, 0, 1]
        assert (letters, held) == (["unknown_ticket"], 0)
    finally:
        running.stop()


def test_partition_counts_come_from_the_cluster(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What ``Runtime.topic_ends`` asks for: every partition the topic has, whichever replica asks (the consumer's
    own view of the counts is filled on the group leader only) and whatever HOTLINE_PARTITIONS says."""
    from services.platform.embedded import EmbeddedStack
    from services.platform.kafka_admin import create_topics, partition_counts
    from services.platform.settings import Settings
    from services.platform.topics import TopicSpec

    stack = EmbeddedStack(tmp_path)
    try:
        settings = Settings(kafka_bootstrap=stack.start_broker(), partitions=1)
        spec = TopicSpec("hotline.workorders", 3, "ticket_id", "", "", "")
        asyncio.run(create_topics(settings, [spec]))
        assert asyncio.run(partition_counts(settings, ["hotline.workorders"])) == {"hotline.workorders": 3}
    finally:
        stack.stop()
