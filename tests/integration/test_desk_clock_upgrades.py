"""Migrations 006 and 007 on the real embedded PostgreSQL: the dispatch desk's clocks reach tickets stored by earlier
versions. A ticket stored in triage (with no next check, since triage had no clock then), or with a unit's extension
request waiting for review (with a next check that did not know the review's clock), becomes due, and the SLA
worker's sweep (``store.lock_due`` → ``sla.sweep`` → ``store.stage``, as ``_sweep_batch`` does) raises the desk's
escalations that fell due and stores the real next check."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from schemas import EscalationKind
from services.domain import lifecycle, sla
from services.domain.tickets import TicketState
from services.platform import db
from services.platform.batch import Batch
from services.sla import store
from tests.conftest import cst
from tests.factories import reported, update, work_order

pytestmark = pytest.mark.integration


def test_tickets_stored_in_triage_before_the_desk_clock_get_it(database: str, router: Any, rules: Any) -> None:
    _, waiting = reported(router, "QP-OLD-1")  # no rule matches: the desk's queue
    _, redirected = reported(router, "QP-OLD-2", "家里着火了，火很大")  # sent to 119, nobody's clock
    assert waiting.status.value == "triage" and redirected.status.value == "redirected"

    async def go() -> None:
        conn = await asyncpg.connect(database)
        try:
            # as an earlier version left them (stored the way the worker stores, with no next check)
            checks = await _upgrade(conn, database, [(waiting, None), (redirected, None)], rules, 6)
            assert checks == {"QP-OLD-1": waiting.opened_at, "QP-OLD-2": None}

            # the sweep at 18:00 finds it due, raises level 1 (11:00) and level 2 (15:00) to the desk, and stores
            # the next check: level 3, one working day after the 11:00 deadline
            now = cst("2025-06-09 18:00")
            ((ticket, found, upcoming),) = await _sweep(conn, now, rules)
            assert ticket == "QP-OLD-1"
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


async def _upgrade(conn: asyncpg.Connection, database: str, states: list[tuple[TicketState, Any]], rules: Any,
                   version: int) -> dict[str, Any]:
    """Store each state with the next check an earlier version gave it, as if migration ``version`` had not been
    applied yet; apply it; return the tickets' next checks."""
    async with conn.transaction():
        stored = Batch(conn)
        for state, next_check in states:
            store.stage(stored, state, rules, next_check=next_check)
        await stored.flush([])
    stored.committed()
    await conn.execute("DELETE FROM schema_migrations WHERE version = $1", version)
    assert [name[:3] for name in await db.migrate(database)] == [f"{version:03d}"]
    return dict(await conn.fetch("SELECT ticket_id, next_check FROM tickets"))


async def _sweep(conn: asyncpg.Connection, now: Any, rules: Any) -> list[tuple[str, list[Any], Any]]:
    """One sweep as the SLA worker makes it: the due tickets, their escalations and their next checks."""
    out = []
    async with conn.transaction():
        batch = Batch(conn)
        for state in await store.lock_due(batch, now, 10):
            swept, found, upcoming = sla.sweep(state, now, rules)
            store.stage(batch, swept, rules, next_check=upcoming)
            out.append((state.ticket_id, found, upcoming))
        await batch.flush([])
    batch.committed()
    return out


def _handled(ticket: str, rules: Any, *steps: tuple[str, str, dict[str, Any]]) -> TicketState:
    state: Any = sla.on_work_order(None, work_order(ticket, cst("2025-06-09 09:00")), rules)
    for action, at, extra in steps:
        result = sla.on_update(state, update(ticket, action, cst(at), **extra), rules)
        assert isinstance(result, lifecycle.Applied), result
        state = result.state
    return state


def test_requests_stored_before_the_review_clock_get_it(database: str, rules: Any) -> None:
    ask = ("extend", "2025-06-10 10:00", {"new_due": cst("2025-06-30 18:00"), "reason": "需协调多个部门"})
    pending = _handled("EXT-OLD-1", rules, ("acknowledge", "2025-06-09 10:00", {}), ask)
    reviewed = _handled("EXT-OLD-2", rules, ("acknowledge", "2025-06-09 10:00", {}), ask,
                        ("review_extension", "2025-06-10 11:00", {}))
    later = cst("2025-06-20 09:00")  # the next unit escalation an earlier version planned for both

    async def go() -> None:
        conn = await asyncpg.connect(database)
        try:
            checks = await _upgrade(conn, database, [(pending, later), (reviewed, later)], rules, 7)
            assert checks == {"EXT-OLD-1": cst("2025-06-10 10:00"), "EXT-OLD-2": later}

            # swept on Thursday noon: the review was due on Wednesday 10:00 (level 1) and level 2 is Thursday 10:00
            ((ticket, found, upcoming),) = await _sweep(conn, cst("2025-06-12 12:00"), rules)
            assert ticket == "EXT-OLD-1"
            review = EscalationKind.extension_review_overdue
            assert [(e.level, e.at) for e in found if e.kind is review] == [
                (1, cst("2025-06-11 10:00")), (2, cst("2025-06-12 10:00"))]
            assert upcoming is not None and upcoming < later
            assert await _sweep(conn, cst("2025-06-12 12:00"), rules) == []  # stored as emitted
        finally:
            await conn.close()

    asyncio.run(go())
