"""One million open tickets: memory and sweep time in the replay's in-memory form and in PostgreSQL.

    .venv/bin/python benchmarks/open_tickets.py                     # 1,000,000 tickets (several minutes)
    .venv/bin/python benchmarks/open_tickets.py --quick             # 20,000 tickets, smoke run
    .venv/bin/python benchmarks/open_tickets.py --tickets 200000 --skip-memory

Tickets are open work orders (派单 状态, half of them also 签收) made by the domain functions themselves:
real work orders from a routed sample (``services.demo.sample`` through the replay) are cloned with new ticket
ids and opening times spread over the 30 days before --at, then ``sla.on_work_order`` (and
``sla.on_update`` with an ``acknowledge``) builds each TicketState.

(a) in memory: the states go into ``services.replay.pipeline.Pipeline`` (ticket dict + deadline heap + the
    campaigns' ``CohortIndex`` counters, via the pipeline's own ``_store_ticket``); RSS growth per ticket; then
    one ``Pipeline.advance`` to the instant at which --due-fraction of the tickets are due (campaign states are
    set so no campaign evaluation is due, and one daily campaign evaluation over the counters is timed
    separately).
(b) in PostgreSQL (embedded pgserver, own data directory under --root): the same states COPY'd into
    ``tickets`` (state jsonb exactly as the SLA store's ``stage`` writes it) and their facts into
    ``campaign_members``, ``campaign_spans`` and ``unit_facts`` (rows exactly as ``stage`` writes them, from
    ``store.ticket_facts``); then table and index sizes, the rate of ``store.backfill_facts`` (what an upgraded database
    runs once), ``services.sla.store.due_ticket_ids`` at the instant --due tickets are due, and the SLA worker's
    own ``sweep`` (``services.sla.agents.build(...).hotline_sweep``, without Kafka: the Runtime's ``publish`` is
    replaced by the database half of it, ``mark_published``) over those due tickets; then the scorecard refresh
    (``store.unit_scores`` + ``store.triage_backlog``, as the worker's timer runs them) and one campaign
    evaluation round through the same ``sweep`` with the shipped campaigns. For these two, the longest stall of
    the event loop is measured too (a 10 ms ticker running alongside).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Timer, footer, header, peak_rss_mib, rss_mib, work_dir  # noqa: E402
from contextlib import asynccontextmanager  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402

from schemas import UnitUpdate, WorkOrder  # noqa: E402
from services.domain import sla  # noqa: E402
from services.domain.campaigns import CampaignState, evaluation_times  # noqa: E402
from services.domain.clock import CHINA_TZ  # noqa: E402
from services.domain.lifecycle import Applied  # noqa: E402
from services.domain.routing import Router  # noqa: E402
from services.domain.sla import SlaRules  # noqa: E402
from services.domain.tickets import TicketState  # noqa: E402


def templates(router: Router, rules: SlaRules) -> list[WorkOrder]:
    """Real first work orders from a routed sample: the replay of 3,000 generated events."""
    from services.demo.sample import generate
    from services.replay.runner import run

    sample = generate(router, n_events=3000, seed=7)
    with tempfile.TemporaryDirectory() as d:
        result = run(sample.write(Path(d)).events, None, router, rules)
    return [w for w in result.pipeline.work_orders if w.dispatch_seq == 1]


def make_states(n: int, orders: list[WorkOrder], rules: SlaRules, at: datetime, seed: int):  # type: ignore[no-untyped-def]
    """Yield n open TicketStates, built by the domain functions."""
    rnd = random.Random(seed)
    span = 30 * 86400
    for i in range(n):
        t = orders[i % len(orders)]
        opened = at - timedelta(seconds=rnd.uniform(0, span))
        tid = f"B{i:08d}"
        decision = t.decision.model_copy(update={"event_id": tid})
        order = t.model_copy(update={"ticket_id": tid, "work_order_id": f"{tid}#1", "opened_at": opened,
                                     "decision": decision,
                                     "dispatched_at": opened + timedelta(seconds=rnd.uniform(1, 60))})
        state = sla.on_work_order(None, order, rules)
        assert isinstance(state, TicketState)
        if i % 2 == 0:
            ack = UnitUpdate(event_id=f"A{i:08d}", ticket_id=tid, action="acknowledge", unit=order.lead_unit,
                             occurred_at=opened + timedelta(hours=rnd.uniform(0.5, 30)), note="已签收")
            result = sla.on_update(state, ack, rules)
            if isinstance(result, Applied):
                state = result.state
        yield state


def steady_campaigns(rules: SlaRules, now: datetime, behind: int = 0) -> dict[str, CampaignState]:
    """Campaign states evaluated up to the last scheduled instant by ``now`` (behind=0: nothing due at ``now``;
    behind=1: exactly one daily evaluation due)."""
    out = {}
    for c in rules.campaigns.campaigns:
        times = evaluation_times(c, None, now)
        last = times[-1 - behind] if len(times) > behind else None
        out[c.id] = CampaignState(campaign_id=c.id, last_evaluated_at=last)
    return out


@asynccontextmanager
async def loop_stalls(period: float = 0.01) -> AsyncIterator[list[float]]:
    """The longest time the event loop could not run a 10 ms ticker, while the body runs: out[0] in seconds."""
    out = [0.0]
    loop = asyncio.get_running_loop()

    async def tick() -> None:
        while True:
            t0 = loop.time()
            await asyncio.sleep(period)
            out[0] = max(out[0], loop.time() - t0 - period)

    task = asyncio.create_task(tick())
    await asyncio.sleep(0)
    try:
        yield out
    finally:
        task.cancel()


# --- (a) in memory -----------------------------------------------------------------------------------------------


def in_memory(args, router: Router, rules: SlaRules, orders: list[WorkOrder]):  # type: ignore[no-untyped-def]
    from services.domain.campaigns import advance as advance_campaign
    from services.replay.pipeline import Pipeline

    print(f"--- (a) in memory: {args.tickets:,} TicketStates in replay.pipeline.Pipeline")
    pipeline = Pipeline(router=router, rules=rules)
    gc.collect()
    base = rss_mib()
    t = Timer()
    for state in make_states(args.tickets, orders, rules, args.at, args.seed):
        pipeline._store_ticket(state)  # the pipeline's own store: ticket dict, campaign members, deadline heap
    build = t.seconds
    gc.collect()
    grown = rss_mib() - base
    print(f"built {len(pipeline.tickets):,} tickets in {build:.1f} s ({args.tickets / build:,.0f} tickets/s: "
          f"on_work_order + acknowledge for half + next_check + heap push)")
    print(f"RSS {base:.0f} -> {base + grown:.0f} MiB: +{grown:.0f} MiB = {grown * 2**20 / args.tickets:,.0f} bytes "
          f"per open ticket (state objects, dict, heap, campaign counters); heap entries {len(pipeline._heap):,}")
    sizes = [len(json.dumps(s.model_dump(mode="json"), ensure_ascii=False).encode())
             for s in list(pipeline.tickets.values())[:2000]]
    print(f"state as JSON: mean {statistics.mean(sizes):,.0f} bytes (first 2,000 tickets)")

    k = max(1, int(len(pipeline._heap) * args.due_fraction))
    now = sorted(at for at, _ in pipeline._heap)[k - 1]
    pipeline.campaign_states.update(steady_campaigns(rules, now))
    before = len(pipeline.escalations)
    due = sum(1 for at in pipeline._next.values() if at <= now)
    t = Timer()
    pipeline.advance(now, inclusive=True)
    secs = t.seconds
    found = len(pipeline.escalations) - before
    print(f"Pipeline.advance to {now.isoformat()} ({due:,} tickets due = {due / len(pipeline.tickets):.2%}): "
          f"{secs:.2f} s, {found:,} escalations, {due / secs:,.0f} due tickets/s "
          f"({secs / max(due, 1) * 1e6:,.0f} µs per due ticket)")

    # one daily campaign evaluation, as advance() would run it when a scheduled instant passes
    total = 0.0
    for c in rules.campaigns.campaigns:
        enrolled = pipeline.cohort(c)
        state = pipeline.campaign_states[c.id]
        nxt = evaluation_times(c, state.last_evaluated_at, now + timedelta(days=1))
        if not nxt:
            continue
        t = Timer()
        advance_campaign(c, state, enrolled, nxt[0])
        total += t.seconds
        print(f"  campaign {c.id}: one evaluation over {len(enrolled):,} enrolled tickets (CohortIndex counts): "
              f"{t.seconds * 1000:.2f} ms")
    print(f"  all campaigns, one evaluation each: {total:.2f} s")
    print(f"peak RSS so far {peak_rss_mib():.0f} MiB")
    return pipeline


# --- (b) PostgreSQL ----------------------------------------------------------------------------------------------


async def in_postgres(args, router: Router, rules: SlaRules, orders: list[WorkOrder], pipeline, dsn: str) -> None:  # type: ignore[no-untyped-def]
    import asyncpg

    from services.domain.campaigns import CampaignBook
    from services.platform import db
    from services.platform.settings import Settings
    from services.sla import store
    from services.sla.agents import BACKFILL_BUDGET_SECONDS, build

    print(f"--- (b) PostgreSQL: {args.tickets:,} rows in tickets")
    conn = await asyncpg.connect(dsn)
    await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    await db.migrate(dsn)
    version = await conn.fetchval("SHOW server_version")
    settings_rows = await conn.fetch(
        "SELECT name, setting, unit FROM pg_settings WHERE name IN ('shared_buffers','work_mem','synchronous_commit',"
        "'fsync','max_wal_size') ORDER BY name")
    print(f"PostgreSQL {version} (pgserver); " + ", ".join(
        f"{r['name']}={r['setting']}{r['unit'] or ''}" for r in settings_rows))

    if pipeline is not None:
        source = ((s, pipeline._next.get(s.ticket_id)) for s in pipeline.tickets.values())
    else:
        source = ((s, sla.next_check(s, rules)) for s in make_states(args.tickets, orders, rules, args.at, args.seed))
    columns = ["ticket_id", "jurisdiction", "source", "category", "status", "unit", "campaigns", "opened_at",
               "next_check", "state"]
    t = Timer()
    dump_secs = facts_secs = 0.0
    batch: list[tuple] = []
    facts: list[store.TicketFacts] = []
    loaded = 0
    fact_rows = {"campaign_members": 0, "campaign_spans": 0, "unit_facts": 0}

    async def flush() -> None:
        nonlocal loaded
        await conn.copy_records_to_table("tickets", records=batch, columns=columns)
        members, spans = store.campaign_rows(facts)
        units = store.unit_rows(facts)
        await conn.copy_records_to_table("campaign_members", records=members,
                                         columns=["ticket_id", "campaign_id", "opened_at"])
        await conn.copy_records_to_table("campaign_spans", records=spans,
                                         columns=["ticket_id", "campaign_id", "opened_at", "done_from", "done_until"])
        await conn.copy_records_to_table("unit_facts", records=units, columns=list(store.UNIT_FACT_COLUMNS))
        for table, rows in (("campaign_members", members), ("campaign_spans", spans), ("unit_facts", units)):
            fact_rows[table] += len(rows)
        loaded += len(batch)
        batch.clear()
        facts.clear()

    for state, nxt in source:
        d = Timer()
        row = (state.ticket_id, state.jurisdiction, state.source, state.category, state.status.value, state.unit,
               state.campaigns, state.opened_at, nxt, json.dumps(state.model_dump(mode="json")))
        dump_secs += d.seconds
        d = Timer()
        facts.append(store.ticket_facts(state, rules.campaigns))
        facts_secs += d.seconds
        batch.append(row)
        if len(batch) >= 20_000:
            await flush()
    if batch:
        await flush()
    load_secs = t.seconds
    print(f"COPY {loaded:,} rows: {load_secs:.1f} s ({loaded / load_secs:,.0f} rows/s; of which model_dump + "
          f"json.dumps {dump_secs:.1f} s, store.ticket_facts {facts_secs:.1f} s = "
          f"{facts_secs / max(loaded, 1) * 1e6:.0f} µs per ticket); fact rows: "
          + ", ".join(f"{k} {v:,}" for k, v in fact_rows.items()))
    t = Timer()
    await conn.execute("VACUUM ANALYZE tickets")
    await conn.execute("VACUUM ANALYZE campaign_members")
    await conn.execute("VACUUM ANALYZE campaign_spans")
    await conn.execute("VACUUM ANALYZE unit_facts")
    print(f"VACUUM ANALYZE: {t.seconds:.1f} s")
    sizes = await conn.fetchrow(
        """SELECT pg_total_relation_size('tickets') AS total, pg_relation_size('tickets') AS heap,
                  pg_total_relation_size('tickets') - pg_relation_size('tickets') - pg_indexes_size('tickets') AS toast,
                  pg_indexes_size('tickets') AS indexes,
                  avg(pg_column_size(state))::int AS state_bytes FROM (SELECT state FROM tickets LIMIT 20000) s""")
    mib = 2**20
    print(f"size: total {sizes['total'] / mib:,.0f} MiB = heap {sizes['heap'] / mib:,.0f} + TOAST "
          f"{sizes['toast'] / mib:,.0f} + indexes {sizes['indexes'] / mib:,.0f} MiB; "
          f"{sizes['total'] / loaded:,.0f} bytes per ticket; state jsonb stored {sizes['state_bytes']:,} bytes (avg)")
    for r in await conn.fetch(
            """SELECT indexrelname, pg_relation_size(indexrelid) AS size FROM pg_stat_user_indexes
               WHERE relname = 'tickets' ORDER BY 1"""):
        print(f"  index {r['indexrelname']}: {r['size'] / mib:,.1f} MiB")
    for table in ("campaign_members", "campaign_spans", "unit_facts"):
        size = await conn.fetchrow("SELECT pg_total_relation_size($1) AS total, pg_indexes_size($1) AS indexes", table)
        print(f"  fact table {table}: {size['total'] / mib:,.1f} MiB (of which indexes {size['indexes'] / mib:,.1f} "
              f"MiB) = {size['total'] / loaded:,.0f} bytes per ticket")

    # the facts of tickets saved before migration 002 are computed once by the SLA worker (store.backfill_facts,
    # a batch of store.BACKFILL_BATCH per transaction); time a few batches over tickets that have facts already
    # (rewritten alike)
    await db._init(conn)
    steps = min(40, loaded // store.BACKFILL_BATCH)
    t = Timer()
    for _ in range(steps):
        async with conn.transaction():
            await store.backfill_facts(conn, rules.campaigns)
    if steps:
        done = steps * store.BACKFILL_BATCH
        rate = done / t.seconds
        print(f"store.backfill_facts: {done:,} tickets in {t.seconds:.1f} s = {rate:,.0f} tickets/s "
              f"(an upgraded database of {loaded:,} tickets: about {loaded / rate:,.0f} s, in steps of at most "
              f"{BACKFILL_BUDGET_SECONDS:.0f} s per sweep)")
    await conn.execute(
        """INSERT INTO facts_backfill (id, facts_key, done_upto, complete) VALUES (1, $1, '', true)
           ON CONFLICT (id) DO UPDATE SET facts_key = EXCLUDED.facts_key, complete = true""",
        store.facts_key(rules.campaigns))  # every fact row was COPY'd above

    due = min(args.due, loaded)
    now = await conn.fetchval(
        "SELECT next_check FROM tickets WHERE next_check IS NOT NULL ORDER BY next_check OFFSET $1 LIMIT 1", due - 1)
    n_due = await conn.fetchval("SELECT count(*) FROM tickets WHERE next_check <= $1", now)
    times = []
    for _ in range(args.repeat):
        t = Timer()
        ids = await store.due_ticket_ids(conn, now)
        times.append(t.seconds)
    print(f"due_ticket_ids(now={now.isoformat()}) [{n_due:,} due, LIMIT 500 -> {len(ids)} ids]: median "
          f"{statistics.median(times) * 1000:.2f} ms, min {min(times) * 1000:.2f} ms over {args.repeat} calls")
    plan = await conn.fetch(
        "EXPLAIN (ANALYZE, BUFFERS) SELECT ticket_id FROM tickets WHERE next_check <= $1 ORDER BY next_check LIMIT 500",
        now)
    for r in plan:
        print(f"  | {r[0]}")
    await conn.close()

    # the SLA worker's sweep, tickets only (campaigns off), then one campaign round with the shipped campaigns
    settings = Settings(database_url=dsn, sla_clock="wall", db_pool_size=4)
    no_campaigns = SlaRules(rules.policies, rules.calendar, CampaignBook(()), rules.repeats, desks=rules.desks)

    def sweep_for(r: SlaRules):  # type: ignore[no-untyped-def]
        app = build(settings, r)
        rt = app.hotline_runtime

        async def publish(rows) -> None:  # type: ignore[no-untyped-def]  # the database half of Runtime.publish
            await db.mark_published(await rt.pool(), [i for i, _ in rows])

        rt.publish = publish
        return app.hotline_sweep, rt

    sweep, rt = sweep_for(no_campaigns)
    pool = await rt.pool()
    await asyncio.sleep(11)
    stats0 = await pool.fetchrow("SELECT xact_commit, tup_fetched, tup_inserted, tup_updated FROM pg_stat_database "
                                 "WHERE datname = current_database()")
    t = Timer()
    emitted = await sweep(now)
    secs = t.seconds
    await asyncio.sleep(11)  # PostgreSQL 16 backends flush pg_stat_database counters up to 10 s after going idle
    stats1 = await pool.fetchrow("SELECT xact_commit, tup_fetched, tup_inserted, tup_updated FROM pg_stat_database "
                                 "WHERE datname = current_database()")
    left = await pool.fetchval("SELECT count(*) FROM tickets WHERE next_check <= $1", now)
    commits = stats1["xact_commit"] - stats0["xact_commit"]
    print(f"SLA worker sweep(now) over {n_due:,} due tickets (pool of {settings.db_pool_size}, Kafka publish "
          f"stubbed): {secs:.2f} s -> {n_due / secs:,.0f} tickets/s ({secs / n_due * 1e6:,.0f} µs each), "
          f"{emitted:,} escalations written to outbox; still due afterwards: {left}; transactions committed: "
          f"{commits:,} ({commits / n_due:.1f} per due ticket)")
    await pool.close()

    # steady campaign state: evaluated up to the scheduled instant before the last one by `now`, so exactly one
    # daily evaluation per campaign is due at `now` (no ticket is due any more: they were swept above)
    conn = await asyncpg.connect(dsn)
    await db._init(conn)
    for c_id, state in steady_campaigns(rules, now, behind=1).items():
        await conn.execute("INSERT INTO campaign_state (campaign_id, state) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                           c_id, state.model_dump(mode="json"))
    enrolled = await conn.fetch("SELECT unnest(campaigns) AS c, count(*) AS n FROM tickets GROUP BY 1 ORDER BY 1")
    await conn.close()
    print("  enrolled: " + ", ".join(f"{r['c']} {r['n']:,}" for r in enrolled))
    # the SLA worker's scorecard refresh (every HOTLINE_SCORECARD_SECONDS, 60 s by default): the two store calls
    # its timer runs (one GROUP BY over unit_facts; the triage backlog)
    conn = await asyncpg.connect(dsn)
    await db._init(conn)
    times = []
    for _ in range(3):
        async with loop_stalls() as stall:
            t = Timer()
            cards = await store.unit_scores(conn, now, now - timedelta(days=90))
            await store.triage_backlog(conn)
            times.append(t.seconds)
    print(f"SLA worker scorecard refresh: store.unit_scores + store.triage_backlog: median {statistics.median(times):.2f} "
          f"s, min {min(times):.2f} s over {len(times)} runs ({len(cards)} unit scorecards, "
          f"{sum(c.open for c in cards):,} open, {sum(c.overdue for c in cards):,} overdue); longest event-loop stall "
          f"in the last run {stall[0] * 1000:.0f} ms")
    plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + store.UNIT_SCORES, now, now - timedelta(days=90))
    for r in plan:
        print(f"  | {r[0]}")
    await conn.close()

    sweep, rt = sweep_for(rules)
    async with loop_stalls() as stall:
        t = Timer()
        emitted = await sweep(now)
    print(f"SLA worker sweep(now) with the shipped campaigns (one daily evaluation each: count queries over "
          f"campaign_members / campaign_spans): {t.seconds:.2f} s, {emitted:,} escalations; longest event-loop "
          f"stall {stall[0] * 1000:.0f} ms")
    async with (await rt.pool()).acquire() as c:
        for campaign in rules.campaigns.campaigns:
            state = await store.load_campaign(c, campaign.id)
            if state is not None and state.history:
                r = state.history[-1]
                print(f"  {campaign.id} at {r.at.isoformat()}: enrolled {r.enrolled:,}, done {r.resolved:,}, "
                      f"status {r.status}")
        # the same count queries for an evaluation at --at, when every ticket has opened (whole cohorts)
        from services.domain.campaigns import questions

        total = 0.0
        async with loop_stalls() as stall:
            for campaign in rules.campaigns.campaigns:
                t = Timer()
                answers = await store.campaign_counts(c, campaign.id, questions(campaign, [args.at]))
                total += t.seconds
                before = [pair for pair in answers.done_at if pair[0] != args.at]
                print(f"  store.campaign_counts for one evaluation of {campaign.id} at {args.at.isoformat()}: "
                      f"{t.seconds * 1000:.0f} ms (enrolled {answers.enrolled(args.at):,}, done "
                      f"{answers.done(args.at, args.at):,}, done a window earlier "
                      f"{answers.done_at[before[0]] if before else 0:,})")
        print(f"  all campaigns' count queries at {args.at.isoformat()}: {total:.2f} s; longest event-loop stall "
              f"{stall[0] * 1000:.0f} ms")
    await (await rt.pool()).close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tickets", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="20,000 tickets, 1,000 due: a smoke run")
    ap.add_argument("--due-fraction", type=float, default=0.01, help="(a) share of tickets due at the sweep")
    ap.add_argument("--due", type=int, default=10_000, help="(b) tickets due at the SLA worker's sweep")
    ap.add_argument("--repeat", type=int, default=20, help="(b) calls of due_ticket_ids to time")
    ap.add_argument("--at", type=datetime.fromisoformat, default=datetime(2025, 6, 10, 12, 0, tzinfo=CHINA_TZ),
                    help="tickets open in the 30 days before this instant")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-memory", action="store_true", help="skip (a)")
    ap.add_argument("--skip-db", action="store_true", help="skip (b)")
    ap.add_argument("--root", type=Path, default=None, help="embedded database directory (default: a temp dir)")
    args = ap.parse_args()
    if args.quick:
        args.tickets, args.due = 20_000, 1_000
    header("open tickets: memory and sweep time", args)
    router, rules = Router.load(), SlaRules.load()
    t = Timer()
    orders = templates(router, rules)
    print(f"{len(orders):,} template work orders from a routed sample ({t.seconds:.1f} s)")
    pipeline = None if args.skip_memory else in_memory(args, router, rules, orders)
    if not args.skip_db:
        from services.platform.embedded import EmbeddedStack

        with work_dir(args.root, "hotline-bench-pg-") as root:
            stack = EmbeddedStack(root)
            try:
                dsn = stack.start_database()
                asyncio.run(in_postgres(args, router, rules, orders, pipeline, dsn))
            finally:
                stack.stop()
    print(f"peak RSS of the benchmark process {peak_rss_mib():.0f} MiB")
    footer()


if __name__ == "__main__":
    main()
