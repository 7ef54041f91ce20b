"""Migration 006 on the real embedded PostgreSQL: a ticket an earlier version stored in triage (with no next check,
since triage had no clock then) becomes due, and the SLA worker's sweep (``store.lock_due`` → ``sla.sweep`` →
``store.stage``, as ``_sweep_batch`` does) raises its triage_overdue levels and stores the real next check."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from schemas import EscalationKind
from services.domain import sla
from services.platform import db
from services.platform.batch import Batch
from services.sla import store
from tests.conftest import cst
from tests.factories import reported

pytestmark = pytest.mark.integration


def test_tickets_stored_in_triage_before_the_desk_clock_get_it(database: str, router: Any, rules: Any) -> None:
    _, waiting = reported(router, "QP-OLD-1")  # no rule matches: the desk's queue
    _, redirected = reported(router, "QP-OLD-2", "家里着火了，火很大")  # sent to 119, nobody's clock
    assert waiting.status.value == "triage" and redirected.status.value == "redirected"

    async def go() -> None:
        conn = await asyncpg.connect(database)
        try:
            # as an earlier version left them (stored the way the worker stores, with no next check); and the
            # migration not yet applied
            async with conn.transaction():
                stored = Batch(conn)
                for state in (waiting, redirected):
                    store.stage(stored, state, rules, next_check=None)
                await stored.flush([])
            stored.committed()
            await conn.execute("DELETE FROM schema_migrations WHERE version = 6")
            assert await db.migrate(database) == ["006_triage_clock.sql"]
            checks = dict(await conn.fetch("SELECT ticket_id, next_check FROM tickets"))
            assert checks == {"QP-OLD-1": waiting.opened_at, "QP-OLD-2": None}

            # the sweep at 18:00 finds it due, raises level 1 (11:00) and level 2 (15:00) to the desk, and stores
            # the next check: level 3, one working day after the 11:00 deadline
            now = cst("2025-06-09 18:00")
            async with conn.transaction():
                batch = Batch(conn)
                due = await store.lock_due(batch, now, 10)
                assert [s.ticket_id for s in due] == ["QP-OLD-1"]
                swept, found, upcoming = sla.sweep(due[0], now, rules)
                store.stage(batch, swept, rules, next_check=upcoming)
                await batch.flush([])
            batch.committed()
            assert [(e.kind, e.level, e.at) for e in found] == [
                (EscalationKind.triage_overdue, 1, cst("2025-06-09 11:00")),
                (EscalationKind.triage_overdue, 2, cst("2025-06-09 15:00"))]
            assert upcoming == cst("2025-06-10 11:00")
            checks = dict(await conn.fetch("SELECT ticket_id, next_check FROM tickets"))
            assert checks == {"QP-OLD-1": upcoming, "QP-OLD-2": None}
            # stored as emitted: swept again at the same time, nothing is due any more
            async with conn.transaction():
                assert await store.lock_due(Batch(conn), now, 10) == []
        finally:
            await conn.close()

    asyncio.run(go())
