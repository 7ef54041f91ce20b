"""The SLA worker's scorecard refresh as history grows: does its cost follow the window, or everything ever stored?

    .venv/bin/python benchmarks/scorecard_history.py                     # 100k recent tickets, history up to 4M
    .venv/bin/python benchmarks/scorecard_history.py --quick             # 10k recent, history up to 100k

Every HOTLINE_SCORECARD_SECONDS the SLA worker runs ``store.unit_scores`` (one GROUP BY over ``unit_facts``: the
tickets opened in the last HOTLINE_SCORECARD_WINDOW_DAYS plus every ticket still open) and
``store.triage_backlog`` (tickets in triage). This script fills an embedded PostgreSQL (pgserver) with synthetic
rows: ``--recent`` tickets opened inside the 90-day window (``--open`` of them still open, some in triage), then
tickets opened before the window in cumulative steps (``--history``; ``--old-open`` of them still open, the rest
closed). After each step it times the two calls as the worker makes them (median of 3) and prints the scan nodes
of the scorecard query's plan. The rows are shaped like the ones ``store.save_facts`` writes (four unit facts per
closed ticket), but their values are synthetic: the figures are about how much is read, not about the
scorecards' contents.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Timer, footer, header, work_dir  # noqa: E402

NOW = datetime(2025, 6, 10, 4, 0, tzinfo=UTC)
WINDOW_DAYS = 90
UNITS = 32

# one ticket's rows: a dispatch cycle, its resolution judged, a callback, and (open tickets) an open row;
# $1: first ticket number, $2: count, $3: newest opening, $4: spacing of openings, $5: open tickets among them
FACTS = """
INSERT INTO unit_facts (ticket_id, jurisdiction, unit, opened_at, ticket_open, kind, counts_from, counts_until,
                        dispatch, ack_judged_from, ack_in_time_from, resolved_from, on_time_from, satisfied, reopened)
SELECT 't' || i, 'j' || (i % 4), 'unit-' || (i % $6), opened, i < $1 + $5, k.kind,
       CASE WHEN k.kind = 'cycle' THEN NULL ELSE opened + interval '1 day' END,
       NULL, k.kind = 'cycle',
       CASE WHEN k.kind = 'cycle' THEN opened + interval '2 hours' END,
       CASE WHEN k.kind = 'cycle' AND i % 10 <> 0 THEN opened + interval '2 hours' END,
       CASE WHEN k.kind = 'cycle' AND i >= $1 + $5 THEN opened + interval '3 days' END,
       CASE WHEN k.kind = 'cycle' AND i >= $1 + $5 AND i % 7 <> 0 THEN opened + interval '3 days' END,
       k.kind = 'callback' AND i % 5 <> 0, false
FROM generate_series($1::bigint, $1 + $2 - 1) AS i,
     LATERAL (SELECT $3::timestamptz - (i - $1) * $4::interval AS opened) AS o,
     LATERAL (SELECT unnest(CASE WHEN i < $1 + $5 THEN ARRAY['cycle', 'open']
                                 ELSE ARRAY['cycle', 'resolve_judged', 'callback', 'return'] END) AS kind) AS k
"""
TICKETS = """
INSERT INTO tickets (ticket_id, jurisdiction, source, category, status, unit, opened_at, state)
SELECT 't' || i, 'j' || (i % 4), 'hotline', NULL,
       CASE WHEN i < $1 + $5 THEN (CASE WHEN i % 20 = 0 THEN 'triage' ELSE 'dispatched' END) ELSE 'closed' END,
       'unit-' || (i % $6), $3::timestamptz - (i - $1) * $4::interval, '{}'::jsonb
FROM generate_series($1::bigint, $1 + $2 - 1) AS i
"""


async def fill(conn, first: int, count: int, newest: datetime, spacing: timedelta, open_: int) -> None:  # type: ignore[no-untyped-def]
    for sql in (FACTS, TICKETS):
        await conn.execute(sql, first, count, newest, spacing, open_, UNITS)
    await conn.execute("ANALYZE unit_facts; ANALYZE tickets")


async def refresh(conn, store):  # type: ignore[no-untyped-def]
    times = []
    for _ in range(3):
        t = Timer()
        scores = await store.unit_scores(conn, NOW, NOW - timedelta(days=WINDOW_DAYS))
        backlog = await store.triage_backlog(conn)
        times.append(t.seconds)
    return statistics.median(times), scores, backlog


async def plan_lines(conn, store) -> list[str]:  # type: ignore[no-untyped-def]
    """The scan nodes of the scorecard query's plan (``store.UNIT_SCORES`` with EXPLAIN in front). Revisions
    before ec969f0's successor kept the query inside ``unit_scores``: run there (a copy of this script in a
    worktree of the old revision), the plan is not shown."""
    if not hasattr(store, "UNIT_SCORES"):
        return ["(plan not shown: this revision has no store.UNIT_SCORES)"]
    rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " + store.UNIT_SCORES, NOW,
                            NOW - timedelta(days=WINDOW_DAYS))
    return [r[0].strip() for r in rows if "Scan" in r[0]]


async def run(args: argparse.Namespace, dsn: str) -> None:
    import asyncpg

    from services.platform import db
    from services.sla import store

    await db.migrate(dsn)
    conn = await asyncpg.connect(dsn)
    await db._init(conn)
    applied = [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations ORDER BY version")]
    print(f"PostgreSQL {await conn.fetchval('SHOW server_version')} (pgserver); migrations: {', '.join(applied)}")
    window = timedelta(days=WINDOW_DAYS)
    # recent tickets spread over the window (newest first); the first --open of them still open
    t = Timer()
    await fill(conn, 0, args.recent, NOW - timedelta(hours=1), (window - timedelta(days=1)) / args.recent, args.open)
    print(f"recent: {args.recent:,} tickets opened in the last {WINDOW_DAYS} days, {args.open:,} of them open "
          f"({t.seconds:.1f} s to insert)")
    stored = 0
    for target in [0, *args.history]:
        if target > stored:
            t = Timer()
            # closed tickets before the window, one per minute going back from its start
            still_open = args.old_open if stored == 0 else 0
            await fill(conn, args.recent + stored, target - stored, NOW - window - timedelta(minutes=1) -
                       stored * timedelta(minutes=1), timedelta(minutes=1), still_open)
            print(f"  + {target - stored:,} tickets opened before the window, {still_open:,} of them still open "
                  f"({t.seconds:.1f} s to insert)")
            stored = target
        rows = await conn.fetchval("SELECT count(*) FROM unit_facts")
        size = await conn.fetchval("SELECT pg_total_relation_size('unit_facts')")
        secs, scores, backlog = await refresh(conn, store)
        print(f"before the window {stored:>9,} tickets | unit_facts {rows:>11,} rows, {size / 2**20:,.0f} MiB | "
              f"unit_scores + triage_backlog: {secs * 1000:,.0f} ms (median of 3) | {len(scores)} scorecards, "
              f"{sum(s.open for s in scores):,} open, triage {sum(backlog.values()):,}")
        for line in await plan_lines(conn, store):
            print(f"    | {line}")
    await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recent", type=int, default=100_000, help="tickets opened inside the window")
    ap.add_argument("--open", type=int, default=20_000, help="of those, still open")
    ap.add_argument("--old-open", type=int, default=1_000,
                    help="tickets opened before the window and still open (in the first history step)")
    ap.add_argument("--history", type=lambda s: [int(x) for x in s.split(",")], default=[1_000_000, 4_000_000],
                    help="closed tickets before the window, cumulative steps (default 1000000,4000000)")
    ap.add_argument("--quick", action="store_true", help="10,000 recent (2,000 open), history 100,000 (1,000 open)")
    ap.add_argument("--root", type=Path, default=None, help="embedded database directory (default: a temp dir)")
    args = ap.parse_args()
    if args.quick:
        args.recent, args.open, args.history = 10_000, 2_000, [100_000]
    header("scorecard refresh against history (store.unit_scores + store.triage_backlog)", args)
    from services.platform.embedded import EmbeddedStack

    with work_dir(args.root, "hotline-bench-pg-") as root:
        stack = EmbeddedStack(root)
        try:
            asyncio.run(run(args, stack.start_database()))
        finally:
            stack.stop()
    footer()


if __name__ == "__main__":
    main()
