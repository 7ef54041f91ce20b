"""The batch unit of work on a real PostgreSQL: one statement per kind of write, later writes of a key replace
earlier ones, state read twice in a batch is read once, and an escalation is published only when its row is new."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from services.platform import db
from services.platform.batch import Batch, IfNew
from services.platform.codec import Outgoing

pytestmark = pytest.mark.integration
AT = datetime(2025, 5, 6, 2, 0, tzinfo=UTC)
UPSERT = """INSERT INTO router_tickets (ticket_id, jurisdiction, state) VALUES ($1, $2, $3)
            ON CONFLICT (ticket_id) DO UPDATE SET state = EXCLUDED.state"""


def _escalation(escalation_id: str) -> tuple[Any, ...]:
    return (escalation_id, "ack_overdue", "qingpu", "T1", None, "区城管执法局", 1, None, AT, '{"x": 1}')


def _message(name: str) -> Outgoing:
    return Outgoing("hotline.escalations", "T1", name.encode(), (("ce_id", name.encode()),))


def test_batch_writes_state_and_escalations(database: str) -> None:
    async def go() -> None:
        pool = await db.create_pool(database)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(UPSERT, "T0", "qingpu", '{"v": 0}')
            await conn.execute("INSERT INTO escalations (escalation_id, kind, level, at, payload) "
                               "VALUES ('old', 'ack_overdue', 1, now(), '{}')")
        fetches: list[list[str]] = []

        async def fetch(conn: asyncpg.Connection, ids: list[str]) -> dict[str, Any]:
            fetches.append(ids)
            rows = await conn.fetch("SELECT ticket_id, state FROM router_tickets WHERE ticket_id = ANY($1)", ids)
            return {r["ticket_id"]: r["state"] for r in rows}

        flushed: list[dict[str, tuple[Any, Any]]] = []

        def flush(batch: Batch, states: dict[str, tuple[Any, Any]]) -> None:
            flushed.append(states)
            for key, (_, value) in states.items():
                batch.write(UPSERT, (key, "qingpu", value), key=key)

        async with pool.acquire() as conn, conn.transaction():
            batch = Batch(conn)
            await batch.prefetch("t", ["T0", "T1", "T0"], fetch)
            await batch.prefetch("t", ["T1", "T2"], fetch)  # T1 is known (as absent): only T2 is asked for
            assert fetches == [["T0", "T1"], ["T2"]]
            assert batch.get("t", "T0") == {"v": 0} and batch.get("t", "T1") is None
            batch.put("t", "T1", '{"v": 1}', flush)
            batch.put("t", "T1", '{"v": 2}', flush)  # the second input on T1 sees and replaces the first
            assert batch.get("t", "T1") == '{"v": 2}'
            batch.escalation(_escalation("new"))
            batch.escalation(_escalation("new"))
            batch.escalation(_escalation("old"))
            published: list[str] = []
            out = await batch.flush([_message("plain"), IfNew("new", _message("e-new"), lambda: published.append("new")),
                                     IfNew("new", _message("e-new-again")), IfNew("old", _message("e-old"))])
            assert published == []  # counted once the transaction commits
        assert [m.value for m in out] == [b"plain", b"e-new"]  # 'old' was there: not published again
        batch.committed()
        assert published == ["new"]
        assert flushed == [{"T1": (None, '{"v": 2}')}]  # as loaded (absent) and the latest state
        states = {r["ticket_id"]: r["state"] for r in await pool.fetch("SELECT * FROM router_tickets")}
        assert states == {"T0": {"v": 0}, "T1": {"v": 2}}
        assert {r["escalation_id"] for r in await pool.fetch("SELECT escalation_id FROM escalations")} == \
            {"old", "new"}
        await pool.close()

    asyncio.run(go())


def test_run_batch_skips_inputs_seen_before_and_prefetches_only_new_ones(database: str) -> None:
    async def go() -> None:
        pool = await db.create_pool(database)
        ran: list[str] = []
        prefetched: list[list[int]] = []

        def work(name: str) -> db.Work:
            async def handler(batch: Batch) -> list[Outgoing]:
                ran.append(name)
                batch.write("INSERT INTO processed_inputs (input_key) VALUES ($1) ON CONFLICT DO NOTHING",
                            (f"effect:{name}",))
                return [_message(name)]
            return handler

        async def prefetch(batch: Batch, positions: list[int]) -> None:
            prefetched.append(positions)

        first = await db.run_batch(pool, "svc", [("svc:t:0:1", work("a"))], prefetch)
        second = await db.run_batch(pool, "svc", [("svc:t:0:1", work("a")), ("svc:t:0:2", work("b"))], prefetch)
        assert [m.value for _, m in first] == [b"a"] and [m.value for _, m in second] == [b"b"]
        assert ran == ["a", "b"] and prefetched == [[0], [1]]
        keys = {r["input_key"] for r in await pool.fetch("SELECT input_key FROM processed_inputs")}
        assert keys == {"svc:t:0:1", "svc:t:0:2", "effect:a", "effect:b"}
        await pool.close()

    asyncio.run(go())
