"""Migrations and the effectively-once plumbing on the real embedded PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.platform import db
from services.platform.batch import Batch
from services.platform.codec import Outgoing
from services.platform.embedded import EmbeddedStack

pytestmark = pytest.mark.integration


def test_migrate_once_run_once_and_prune(tmp_path: Path) -> None:
    stack = EmbeddedStack(tmp_path)
    try:
        dsn = stack.start_database()

        async def go() -> None:
            assert await db.migrate(dsn) == ["001_initial.sql", "002_stored_facts.sql", "003_window_indexes.sql", "004_held_inputs.sql",
                                             "005_hold_watermark.sql", "006_triage_clock.sql",
                                             "007_extension_review_clock.sql"]
            assert await db.migrate(dsn) == []  # idempotent
            pool = await db.create_pool(dsn)
            calls = 0

            async def work(batch: Batch) -> list[Outgoing]:
                nonlocal calls
                calls += 1
                return [Outgoing("t", "k", b"{}", (("ce_id", b"1"),))]

            first = await db.run_once(pool, "svc", "svc:t:0:1", work)
            again = await db.run_once(pool, "svc", "svc:t:0:1", work)  # a redelivery
            assert first is not None and len(first) == 1 and again is None and calls == 1
            assert len(await db.unpublished(pool, "svc", older_than_seconds=0)) == 1  # the relay would re-send it
            await db.mark_published(pool, [first[0][0]])
            assert await db.unpublished(pool, "svc", older_than_seconds=0) == []
            await pool.execute("UPDATE processed_inputs SET processed_at = now() - interval '8 days'")
            await pool.execute("UPDATE outbox SET published_at = now() - interval '8 days'")
            assert await db.prune(pool, "svc", 7) == (1, 1)
            assert await db.prune(pool, "other", 7) == (0, 0)
            await pool.close()

        asyncio.run(go())
    finally:
        stack.stop()
