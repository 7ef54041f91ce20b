"""The SLA store's count queries on the real embedded PostgreSQL give exactly what walking the ticket states gives:
``unit_scores`` equals ``scorecards.compute`` over the tickets the scorecard window covers, and the campaign
counts give the same evaluations and escalations as ``TicketCounts``, over many varied ticket histories saved
state by state as the workers save them (``store.stage`` on a batch), at many instants; also after the facts were
computed by the backfill."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from services.domain import scorecards
from services.domain.campaigns import CampaignBook, CampaignState, TicketCounts, advance, evaluation_times, questions
from services.domain.tickets import OPEN_FOR_UNIT, TicketState
from services.platform import db
from services.platform.batch import Batch
from services.platform.embedded import EmbeddedStack
from services.sla import store
from tests.conftest import cst
from tests.histories import campaigns, moments, trails

pytestmark = pytest.mark.integration


def test_count_queries_equal_the_walk_over_ticket_states(rules, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    book = CampaignBook(tuple(campaigns()))
    saved = trails(rules, 300, seed=11)
    tickets = [trail[-1] for trail in saved]
    stack = EmbeddedStack(tmp_path)
    try:
        dsn = stack.start_database()

        async def go() -> None:
            await db.migrate(dsn)
            pool = await db.create_pool(dsn)
            with_book = replace(rules, campaigns=book)
            async with pool.acquire() as conn:
                for trail in saved:  # every state in turn, as the handlers save them: one batch each
                    for state in trail:
                        async with conn.transaction():
                            batch = Batch(conn)
                            await store.load(batch, state.ticket_id)  # the stored rows are diffed against it
                            store.stage(batch, state, with_book)
                            await batch.flush([])
                await _check(conn, tickets, book, random.Random(1), n=60)
                # as after the upgrade: no facts stored; the backfill computes them in steps
                await conn.execute("TRUNCATE campaign_members, campaign_spans, unit_facts")
                steps = 0
                while True:
                    steps += 1
                    async with conn.transaction():
                        if await store.backfill_facts(conn, book, limit=37):
                            break
                assert steps == len(tickets) // 37 + 1
                async with conn.transaction():
                    assert await store.backfill_facts(conn, book)  # done, until the definitions change
                await _check(conn, tickets, book, random.Random(2), n=15)
                other = CampaignBook(book.campaigns[:2])
                async with conn.transaction():
                    assert not await store.backfill_facts(conn, other, limit=200)  # a new key: computed again
                async with conn.transaction():
                    assert await store.backfill_facts(conn, other, limit=200)
                assert await conn.fetchval("SELECT count(DISTINCT campaign_id) FROM campaign_members") == 2
            await pool.close()

        asyncio.run(go())
    finally:
        stack.stop()


async def _check(conn: asyncpg.Connection, tickets: list[TicketState], book: CampaignBook, rnd: random.Random,
                 n: int) -> None:
    instants = sorted(set(moments(tickets, rnd, n)) | _edges(rnd.sample(tickets, 40)))
    for now in instants:
        since = now - timedelta(days=rnd.choice((0, 10, 30, 90)))
        window = [t for t in tickets if t.opened_at >= since or t.status in OPEN_FOR_UNIT]
        assert await store.unit_scores(conn, now, since) == scorecards.compute(window, now), now
    assert sum(s.overdue for s in await store.unit_scores(conn, instants[-1], instants[0])) > 0
    end = cst("2025-08-01 00:00")
    for campaign in book.campaigns:
        times = evaluation_times(campaign, None, end)
        answers = await store.campaign_counts(conn, campaign.id, questions(campaign, times))
        walk = TicketCounts(campaign, tickets)
        for at in times:
            assert answers.enrolled(at) == walk.enrolled(at) and answers.first_opened(at) == walk.first_opened(at)
        assert answers.done_at == {pair: walk.done(*pair) for pair in questions(campaign, times).done}
        start = CampaignState(campaign_id=campaign.id)
        assert advance(campaign, start, answers, end) == advance(campaign, start, walk, end)
        some = [rnd.choice(instants) for _ in range(60)]
        q = questions(campaign, some)
        answers = await store.campaign_counts(conn, campaign.id, q)
        assert answers.done_at == {pair: walk.done(*pair) for pair in q.done}


def _edges(tickets: list[TicketState]) -> set[datetime]:
    """Every moment at which one of these tickets' stored facts starts or stops counting, and ± 1 µs."""
    moments: set[datetime] = set()
    for f in (f for t in tickets for f in scorecards.unit_facts(t)):
        moments |= {m for m in (f.at, f.until, f.ack_judged_from, f.ack_in_time_from, f.resolved_from,
                                f.on_time_from) if m is not None}
    moments |= {m for t in tickets for span in t.resolved_spans() for m in span if m is not None}
    tiny = timedelta(microseconds=1)
    return {m + d for m in moments for d in (-tiny, timedelta(0), tiny)}


def test_the_triage_backlog_counts_redirects_the_desk_reviews(database: str, rules, router) -> None:  # type: ignore[no-untyped-def]
    """The desk's queue: tickets in triage, and redirects it was asked to review; not a plain redirect, nor a
    reviewed one the desk has closed."""
    from schemas import Ruling
    from services.domain import dispatch, sla
    from tests.factories import reported

    _, triaged = reported(router, event_id="QP-1")
    review_out, review = reported(router, event_id="QP-2", content="工地晚上施工噪音很大，还有工人打架吵闹")
    _, plain = reported(router, event_id="QP-3", content="有人持刀抢劫")
    closing = Ruling(ruling_id="R1", ticket_id="QP-4", desk="区城运中心", action="close",
                     occurred_at=cst("2025-06-09 10:00"), reason="打架已由110处置，无需另行派单")
    closed_out, closed = reported(router, event_id="QP-4", content="工地晚上施工噪音很大，还有工人打架吵闹")
    ruled = dispatch.on_ruling(closed_out.ticket, closing, router)
    closed = sla.on_triage(closed, ruled.triage)  # type: ignore[union-attr, arg-type]
    assert [s.status.value for s in (triaged, review, plain, closed)] == ["triage", "redirected", "redirected", "closed"]

    async def go() -> dict[str, int]:
        pool = await db.create_pool(database)
        async with pool.acquire() as conn:
            async with conn.transaction():
                batch = Batch(conn)
                for state in (triaged, review, plain, closed):
                    await store.load(batch, state.ticket_id)
                    store.stage(batch, state, rules)
                await batch.flush([])
            backlog = await store.triage_backlog(conn)
        await pool.close()
        return backlog

    assert asyncio.run(go()) == {"qingpu": 2}
