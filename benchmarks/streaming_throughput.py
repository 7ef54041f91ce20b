"""Streaming throughput on the embedded stack (Tansu + pgserver): a raw aiokafka passthrough over three hops
against the real pipeline intake → router → SLA, in the same run.

    .venv/bin/python benchmarks/streaming_throughput.py                # 10,000 sample events, 50,000 passthrough
    .venv/bin/python benchmarks/streaming_throughput.py --quick        # 300 events, smoke run
    .venv/bin/python benchmarks/streaming_throughput.py --events 10000 --no-statements

(a) passthrough: topics bench.pt.1 → .2 → .3 → .4 with the pipeline's partition count; three forwarders
    (each an AIOKafkaConsumer → AIOKafkaProducer(acks=all) loop in its own asyncio task of this process) copy
    every record (key, value, headers) one hop on. The messages are the sample's raw event lines (cycled to
    --passthrough-messages), keyed by jurisdiction. Timed from the first send to the moment bench.pt.4 holds
    every message.
(b) pipeline: the three workers started by ``services.demo.stack.start`` (SLA clock "ticks" and no tick is
    sent, so no escalation sweep runs: this is message processing only). The sample's raw event lines are
    published to hotline.events.raw keyed by jurisdiction (as ``Feeder.publish`` does) and timed until every
    consumer group has processed every message on its topics and the outbox is empty (``outstanding`` below is 0:
    every event has gone through intake, router and SLA).
Evidence printed for the bottleneck: per-service ``hotline_processing_seconds`` from /metrics, CPU seconds per
process (workers, broker, PostgreSQL), PostgreSQL transactions per input, and (unless --no-statements) the SQL
statements per input per service, counted from the PostgreSQL log with log_statement=all over a small extra
batch published after the timed run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (Timer, batch_sizes, cpu_delta, cpu_snapshot, diff_hist, footer, header,  # noqa: E402
                     histogram, histogram_quantile, parse_metrics, work_dir)

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from services.demo.sample import generate  # noqa: E402
from services.domain.routing import Router  # noqa: E402

TARGET_EVENTS_PER_S = 3_000
TARGET_RATIO = 0.25
STATS_SETTLE = 11.0  # PostgreSQL 16 backends flush pg_stat_database counters up to 10 s after going idle


def key_of(raw: bytes) -> bytes | None:
    try:
        return str(json.loads(raw).get("jurisdiction", "")).encode() or None
    except (ValueError, AttributeError, RecursionError):
        return None


# --- (a) passthrough -----------------------------------------------------------------------------------------------


async def forwarder(bootstrap: str, src: str, dst: str, group: str, ready: asyncio.Event, acked: list[int]) -> None:
    consumer = AIOKafkaConsumer(src, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=True)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        ready.set()
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=1000)
            futures = []
            for records in batches.values():
                for r in records:
                    futures.append(await producer.send(dst, r.value, key=r.key, headers=list(r.headers or ())))
            if futures:
                await asyncio.gather(*futures)
                acked[0] += len(futures)
    finally:
        await consumer.stop()
        await producer.stop()


async def passthrough(bootstrap: str, partitions: int, lines: list[bytes], n: int) -> tuple[float, float]:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topics = [f"bench.pt.{i}" for i in range(1, 5)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    finally:
        await admin.close()
    readies = [asyncio.Event() for _ in range(3)]
    acked = [[0] for _ in range(3)]
    tasks = [asyncio.create_task(forwarder(bootstrap, topics[i], topics[i + 1], f"bench-pt-{i}", readies[i],
                                           acked[i])) for i in range(3)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        t = Timer()
        futures = [await producer.send(topics[0], raw, key=key_of(raw)) for raw in itertools.islice(
            itertools.cycle(lines), n)]
        await asyncio.gather(*futures)
        published = t.seconds
        # done when the last hop has had every record acknowledged on bench.pt.4 (counted by the forwarder:
        # Tansu's ListOffsets "latest" under-reports, see docs/performance.md)
        while acked[2][0] < n:
            await asyncio.sleep(0.01)
            for task in tasks:
                if task.done():
                    task.result()
        secs = t.seconds
        probe = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await probe.start()
        try:
            ends = await probe.end_offsets([TopicPartition(topics[3], p) for p in range(partitions)])
        finally:
            await probe.stop()
        print(f"  (records acknowledged on {topics[3]}: {acked[2][0]:,}; the broker's ListOffsets 'latest' sums to "
              f"{sum(ends.values()):,})")
        return secs, published
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()


# --- (b) the pipeline ----------------------------------------------------------------------------------------------


async def db_stats(conn) -> dict[str, int]:  # type: ignore[no-untyped-def]
    row = await conn.fetchrow("SELECT xact_commit, tup_inserted, tup_updated, tup_fetched FROM pg_stat_database "
                              "WHERE datname = current_database()")
    processed = await conn.fetch("SELECT split_part(input_key, ':', 1) AS service, count(*) AS n FROM processed_inputs "
                                 "GROUP BY 1")
    return {**dict(row), **{f"processed:{r['service']}": r["n"] for r in processed}}


async def outstanding(conn, topics: dict[str, str], raw_published: int) -> int:  # type: ignore[no-untyped-def]
    """Inputs not yet processed, by exact accounting in PostgreSQL (not Kafka offsets): raw lines published minus
    those intake processed; intake's outbox rows to ``accepted`` minus router inputs; router's outbox rows to
    ``workorders``/``triage`` minus SLA inputs; plus outbox rows not yet published."""
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM processed_inputs WHERE input_key LIKE 'intake:%') AS intake,
                  (SELECT count(*) FROM processed_inputs WHERE input_key LIKE 'router:%') AS router,
                  (SELECT count(*) FROM processed_inputs WHERE input_key LIKE 'sla:%') AS sla,
                  (SELECT count(*) FROM outbox WHERE service = 'intake' AND topic = $1) AS to_router,
                  (SELECT count(*) FROM outbox WHERE service = 'router' AND topic = ANY($2::text[])) AS to_sla,
                  (SELECT count(*) FROM outbox WHERE published_at IS NULL) AS pending""",
        topics["accepted"], [topics["workorders"], topics["triage"]])
    return (max(raw_published - row["intake"], 0) + max(row["to_router"] - row["router"], 0)
            + max(row["to_sla"] - row["sla"], 0) + row["pending"])


async def pipeline(running, lines: list[bytes], poll: float,  # type: ignore[no-untyped-def]
                   already: int = 0) -> tuple[float, float, dict, dict]:
    from services.demo.feeder import Feeder

    async with Feeder(running.settings, running.dsn) as feeder:
        await asyncio.sleep(STATS_SETTLE)
        before = await db_stats(feeder.db)
        t = Timer()
        await feeder.publish("raw", lines, "jurisdiction")
        published = t.seconds
        while await outstanding(feeder.db, feeder.topics, already + len(lines)):
            await asyncio.sleep(poll)
        secs = t.seconds
        await asyncio.sleep(STATS_SETTLE)
        after = await db_stats(feeder.db)
    return secs, published, before, after


def pg_log_path(running) -> Path:  # type: ignore[no-untyped-def]
    return Path(running.stack.database.log)


async def count_statements(running, lines: list[bytes]) -> dict[str, tuple[int, Counter]]:  # type: ignore[no-untyped-def]
    """Publish ``lines`` with log_statement=all and count the SQL statements each worker ran per input."""
    import asyncpg

    from services.demo.feeder import Feeder

    log = pg_log_path(running)
    admin = await asyncpg.connect(running.dsn)
    await admin.execute("ALTER SYSTEM SET log_statement = 'all'")
    await admin.execute("SELECT pg_reload_conf()")
    await asyncio.sleep(1.0)
    start = log.stat().st_size
    try:
        async with Feeder(running.settings, running.dsn) as feeder:
            before = await db_stats(feeder.db)
            already = before.get("processed:intake", 0)
            await feeder.publish("raw", lines, "jurisdiction")
            while await outstanding(feeder.db, feeder.topics, already + len(lines)):
                await asyncio.sleep(0.5)
            after = await db_stats(feeder.db)
    finally:
        await admin.execute("ALTER SYSTEM RESET log_statement")
        await admin.execute("SELECT pg_reload_conf()")
        await admin.close()
    with log.open("rb") as f:
        f.seek(start)
        text = f.read().decode("utf-8", "replace")
    per_pid: dict[str, Counter] = defaultdict(Counter)
    owner: dict[str, str] = {}
    marks = {"intake_events": "intake", "router_tickets": "router", "FROM tickets": "sla", "INTO tickets": "sla"}
    for m in re.finditer(r"\[(\d+)\] LOG:  (statement|execute [^:]*): (.*)", text):
        pid, sql = m.group(1), m.group(3).strip()
        if any(s in sql for s in ("pg_stat_database", "count(*)", "pg_reload_conf", "ALTER SYSTEM")):
            continue  # the benchmark's own polling
        word = " ".join(sql.split()[:3])[:60]
        per_pid[pid][word] += 1
        for needle, service in marks.items():
            if needle in sql and pid not in owner:
                owner[pid] = service
    out: dict[str, tuple[int, Counter]] = {}
    for service in ("intake", "router", "sla"):
        counter: Counter = Counter()
        for pid, c in per_pid.items():
            if owner.get(pid) == service:
                counter.update(c)
        inputs = after.get(f"processed:{service}", 0) - before.get(f"processed:{service}", 0)
        out[service] = (inputs, counter)
    return out


def stage_report(before: dict[str, str], after: dict[str, str]) -> list[str]:
    lines = []
    for service in ("intake", "router", "sla"):
        b = parse_metrics(before[service])
        a = parse_metrics(after[service])
        hb, sb, cb = histogram(b, "hotline_processing_seconds", {"service": service})
        ha, sa, ca = histogram(a, "hotline_processing_seconds", {"service": service})
        h, s, c = diff_hist(ha, hb), sa - sb, ca - cb
        if c <= 0:
            lines.append(f"  {service:<7} no inputs")
            continue
        under = {le: n / c for le, n in h}
        q99 = histogram_quantile(h, 0.99) * 1000
        lines.append(f"  {service:<7} {int(c):>7} inputs, mean {s / c * 1000:6.2f} ms per input (batch time / batch "
                     f"size), {under.get(0.005, 0):.0%} under 5 ms, {under.get(0.01, 0):.0%} under 10 ms, p99 ~"
                     f"{q99:.0f} ms  -> at most {c / s:,.0f} inputs/s for this stage")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000, help="sample events for the pipeline (default 10000)")
    ap.add_argument("--passthrough-messages", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="300 events, 3,000 passthrough messages")
    ap.add_argument("--statements", type=int, default=200,
                    help="events of the extra batch whose SQL statements are counted (0: skip)")
    ap.add_argument("--no-statements", action="store_true", help="skip the statement count")
    ap.add_argument("--poll", type=float, default=0.5, help="seconds between completion checks of the pipeline")
    ap.add_argument("--root", type=Path, default=None, help="directory of the embedded stack (default: temp dir)")
    args = ap.parse_args()
    if args.quick:
        args.events, args.passthrough_messages, args.statements = 300, 3_000, 50
    if args.no_statements:
        args.statements = 0
    header("streaming throughput: aiokafka passthrough (3 hops) vs intake → router → SLA", args)

    from services.demo.stack import SERVICES, start
    from services.platform.embedded import stop_on_signals

    stop_on_signals()  # SIGTERM / Ctrl-C still stop the broker, database and workers

    router = Router.load()
    sample = generate(router, n_events=args.events, seed=args.seed)
    lines = sample.events
    extra = generate(router, n_events=args.statements, seed=args.seed + 1).events if args.statements else []
    extra = [raw.replace(b'"event_id": "', b'"event_id": "S') for raw in extra]  # fresh ids, not duplicates
    size = sum(map(len, lines)) / max(len(lines), 1)
    print(f"sample: {args.events} events -> {len(lines)} raw lines (duplicates, repeats, broken lines included), "
          f"mean {size:.0f} bytes")

    with work_dir(args.root, "hotline-bench-stream-") as root:
        t = Timer()
        running = start(root, router, sla_clock="ticks", partitions=args.partitions)
        print(f"embedded stack + 3 workers up in {t.seconds:.1f} s ({root})")
        try:
            time.sleep(3)  # let the consumer groups settle
            snap = cpu_snapshot(running.stack)
            secs_pt, pub_pt = asyncio.run(passthrough(running.settings.kafka_bootstrap, args.partitions, lines,
                                                      args.passthrough_messages))
            snap2 = cpu_snapshot(running.stack)
            rate_pt = args.passthrough_messages / secs_pt
            print(f"(a) passthrough: {args.passthrough_messages:,} messages x 3 hops in {secs_pt:.2f} s "
                  f"(publishing took {pub_pt:.2f} s) -> {rate_pt:,.0f} messages/s end to end")
            print("\n".join(cpu_delta(snap, snap2, secs_pt)))

            metrics_before = {s: running.metrics(s) for s in SERVICES}
            snap = cpu_snapshot(running.stack)
            secs, published, db0, db1 = asyncio.run(pipeline(running, lines, args.poll))
            snap2 = cpu_snapshot(running.stack)
            metrics_after = {s: running.metrics(s) for s in SERVICES}
            rate = len(lines) / secs
            print(f"(b) pipeline: {len(lines):,} raw lines through intake -> router -> SLA in {secs:.2f} s (publishing "
                  f"took {published:.2f} s) -> {rate:,.1f} events/s (completion polled every {args.poll} s)")
            inputs = {s: db1.get(f"processed:{s}", 0) - db0.get(f"processed:{s}", 0) for s in SERVICES}
            total_inputs = sum(inputs.values())
            commits = db1["xact_commit"] - db0["xact_commit"]
            print(f"  inputs processed: {inputs} = {total_inputs:,}; PostgreSQL commits {commits:,} "
                  f"({commits / total_inputs:.2f} per input, the benchmark's polling included), rows inserted "
                  f"{db1['tup_inserted'] - db0['tup_inserted']:,}, updated {db1['tup_updated'] - db0['tup_updated']:,}")
            print("  per-stage hotline_processing_seconds (one input = decode + DB transaction + publish):")
            print("\n".join(stage_report(metrics_before, metrics_after)))
            print(f"  {batch_sizes(metrics_before, metrics_after)}")
            print("  CPU during (b):")
            print("\n".join(cpu_delta(snap, snap2, secs)))
            ratio = rate / rate_pt
            print(f"ratio pipeline / passthrough: {ratio:.3f}")
            print(f"targets: >= {TARGET_EVENTS_PER_S:,} events/s: {'MET' if rate >= TARGET_EVENTS_PER_S else 'NOT MET'} "
                  f"({rate:,.1f}); >= {TARGET_RATIO} of passthrough: {'MET' if ratio >= TARGET_RATIO else 'NOT MET'} "
                  f"({ratio:.3f})")
            if extra:
                counts = asyncio.run(count_statements(running, extra))
                print(f"SQL statements per input (log_statement=all over an extra batch of {len(extra)} events; BEGIN "
                      f"and COMMIT count as statements; the rows of one executemany are logged one statement each but are "
                      f"pipelined in a single round trip):")
                for service, (n, counter) in counts.items():
                    total = sum(counter.values())
                    print(f"  {service:<7} {n:>5} inputs, {total:>6} statements = {total / max(n, 1):5.2f} per input")
                    for word, k in counter.most_common(8):
                        print(f"      {k / max(n, 1):5.2f}  {word}")
        finally:
            running.stop()
    footer()


if __name__ == "__main__":
    main()
