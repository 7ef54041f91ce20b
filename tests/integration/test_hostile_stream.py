"""Garbage on the real broker: the intake worker accounts for every message and keeps running."""

from __future__ import annotations

import asyncio
import json
import random
import re
import urllib.request
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.demo.feeder import Feeder
from services.demo.stack import start

pytestmark = pytest.mark.integration


def _messages(n: int, seed: int = 99) -> list[bytes]:
    rnd = random.Random(seed)
    base = {"event_id": "", "source": "hotline_12345", "jurisdiction": "qingpu",
            "occurred_at": "2025-05-06T09:00:00+08:00", "content": "路灯不亮了好几天", "address": "上海市青浦区夏阳街道"}
    out: list[bytes] = []
    for i in range(n):
        kind = rnd.randrange(7)
        if kind == 0:
            out.append(bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 200))))
        elif kind == 1:
            out.append(b"{" * rnd.randrange(1, 500))
        elif kind == 2:
            event = {**base, "event_id": f"H{i}"}
            event[rnd.choice(list(base))] = rnd.choice([None, 42, [], {"x": 1}, "\u0000", "x" * 5000])
            out.append(json.dumps(event).encode())
        elif kind == 3:
            out.append(json.dumps({**base, "event_id": f"OK{i % 50}"}, ensure_ascii=False).encode())  # repeats ids
        elif kind == 4:
            out.append(b"x" * rnd.choice([10, 70_000]))
        elif kind == 5:
            out.append(json.dumps({**base, "event_id": f"D{i}", "occurred_at": "not a time"}).encode())
        else:  # JSON escapes of unpaired surrogates (no character; not encodable as UTF-8): in a value, a key, the id
            where = rnd.choice(["content", "key", "event_id"])
            event = {**base, "event_id": f"S{i}\ud800" if where == "event_id" else f"S{i}"}
            if where == "content":
                event["content"] = "路灯\udc00不亮"
            elif where == "key":
                event["\ud83dx"] = 1
            out.append(json.dumps(event).encode())  # ASCII JSON: the lone surrogate is written as its escape
    return out


def test_every_hostile_message_is_accounted_and_the_worker_survives(router, tmp_path) -> None:  # type: ignore[no-untyped-def]
    running = start(tmp_path, router, sla_clock="wall", services=("intake",))
    try:
        messages = _messages(3000)
        # dated by the sender's clock, against the Kafka record's timestamp (the feeder's clock): 8 hours ahead (a
        # Beijing time written as UTC) is a future_timestamp dead letter; a minute ahead is within the leeway
        now = datetime.now(UTC)
        for event_id, ahead in (("AHEAD-8H", timedelta(hours=8)), ("AHEAD-1MIN", timedelta(minutes=1))):
            messages.append(json.dumps({"event_id": event_id, "source": "hotline_12345", "jurisdiction": "qingpu",
                                        "occurred_at": (now + ahead).isoformat(), "content": "路灯不亮了好几天",
                                        "address": "上海市青浦区盈浦街道"}, ensure_ascii=False).encode())

        async def go() -> tuple[int, int]:
            async with Feeder(running.settings, running.dsn) as feeder:
                await feeder.publish("raw", messages, "event_id")
                deadline = asyncio.get_running_loop().time() + 240
                conn = await asyncpg.connect(running.dsn)
                try:
                    while True:
                        done = await conn.fetchval(
                            "SELECT count(*) FROM processed_inputs WHERE input_key LIKE 'intake:%'")
                        if done >= len(messages) or asyncio.get_running_loop().time() > deadline:
                            break
                        await asyncio.sleep(0.5)
                    letters = await conn.fetchval("SELECT count(*) FROM dead_letters")
                    ahead = await conn.fetch("SELECT reason, field FROM dead_letters WHERE original LIKE '%AHEAD-%'")
                    assert [(r["reason"], r["field"]) for r in ahead] == [("future_timestamp", "occurred_at")]
                    assert await conn.fetchval("SELECT count(*) FROM intake_events WHERE event_id = 'AHEAD-1MIN'") == 1
                    accepted = await conn.fetchval("SELECT count(*) FROM intake_events")
                    return int(letters), int(accepted)
                finally:
                    await conn.close()

        letters, accepted = asyncio.run(go())
        metrics = running.metrics("intake")
        duplicates = int(float(re.search(r'hotline_duplicates_total\{stage="intake"\} (\S+)', metrics).group(1)))
        assert letters + accepted + duplicates == len(messages)
        assert accepted >= 50 and letters > 1000  # the 50 good ids, and mutations that happen to be valid
        with urllib.request.urlopen(running.metrics_url("intake").replace("/metrics", "/healthz"), timeout=5) as r:
            assert json.loads(r.read())["ok"] is True
        assert running.stack.workers["intake"].poll() is None
    finally:
        running.stop()
