"""Dispatch latency at a steady rate: publish time of a raw event → its work order on the unit's topic.

    .venv/bin/python benchmarks/dispatch_latency.py                          # 200 events/s for 45 s
    .venv/bin/python benchmarks/dispatch_latency.py --rates 200,100 --seconds 60
    .venv/bin/python benchmarks/dispatch_latency.py --quick                  # 20 events/s for 8 s

The embedded stack and the three workers are started by ``services.demo.stack.start`` with the SLA clock on the
wall clock. Sample events (``services.demo.sample.generate``; broken lines dropped) get fresh event ids and
``occurred_at`` = the moment of publishing; they are published to hotline.events.raw keyed by jurisdiction at
a steady rate (each send scheduled at t0 + i/rate); each gets a distinct address so that the cycled templates are not merged
as repeat reports. A consumer assigned to every ``hotline.unit.<code>`` topic
(positioned at their end before publishing; fetch wait 50 ms, as the workers') records when the first copy of each work order arrives, matched
by ticket_id. Events that become triage items, redirects or repeat reports have no work order and are not
counted. Before the timed phases a probe times one plain aiokafka hop on the same broker at several consumer
``fetch_max_wait_ms`` values (Faust's default is 1500 ms; the workers set ``HOTLINE_FETCH_WAIT_MS``, 50 ms by default). After publishing stops the benchmark waits (--drain seconds at most) for the stragglers. For each
rate it prints publish→unit-topic latency p50/p95/p99/max, the latency trend (first vs last third of the
window: a pipeline that cannot keep up shows a growing latency, or more than a second of work orders still on
their way when publishing stops; then it is not sustained), and the router's
``hotline_dispatch_latency_seconds`` histogram (intake receipt → work order published) quantiles from /metrics,
over the same window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (batch_sizes, cpu_delta, cpu_snapshot, create_topic, diff_hist, footer,  # noqa: E402
                     header, histogram, histogram_quantile, parse_metrics, pct, work_dir)

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from services.demo.sample import generate  # noqa: E402
from services.domain.clock import CHINA_TZ  # noqa: E402
from services.domain.routing import Router  # noqa: E402

TARGET_P99_MS = 250.0
REPEAT_TYPE = b"cn.gov.12345.intake.repeat.v1"


async def hop_probe(bootstrap: str, wait_ms: int, n: int = 100, interval: float = 0.05) -> list[float]:
    """One broker hop, producer -> consumer, at 20 messages/s: the latency a consumer with this
    fetch_max_wait_ms sees (Faust's aiokafka driver hard-codes 1500 ms; the workers patch it to
    ``HOTLINE_FETCH_WAIT_MS``)."""
    topic = f"bench.hop.{wait_ms}"
    await create_topic(bootstrap, topic, 4)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-hop-{wait_ms}",
                                auto_offset_reset="earliest", fetch_max_wait_ms=wait_ms)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    lat: list[float] = []
    done = asyncio.Event()

    async def reader() -> None:
        while not done.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            now = time.time()
            lat.extend((now - float(r.value)) * 1000 for records in batches.values() for r in records)

    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        task = asyncio.create_task(reader())
        for i in range(n):
            await producer.send(topic, str(time.time()).encode(), key=str(i % 4).encode())
            await asyncio.sleep(interval)
        await asyncio.sleep(3)
        done.set()
        await task
    finally:
        await consumer.stop()
        await producer.stop()
    return sorted(lat)


def templates(router: Router, n: int, seed: int) -> list[dict]:
    out = []
    for raw in generate(router, n_events=n, seed=seed).events:
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if isinstance(event, dict) and "content" in event and "address" in event and "T" in str(
                event.get("occurred_at", "")):
            out.append(event)
    return out


async def phase(running, router: Router, events: list[dict], rate: float, seconds: float, drain: float,  # type: ignore[no-untyped-def]
                tag: str, tag_no: int) -> None:
    from services.platform.topics import names, unit_topic

    bootstrap = running.settings.kafka_bootstrap
    raw_topic = names(running.settings.topic_prefix)["raw"]
    unit_topics = sorted({unit_topic(running.settings.topic_prefix, code) for _, code, _ in router.all_units()})
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=running.settings.fetch_wait_ms)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    published: dict[str, float] = {}
    arrived: dict[str, float] = {}
    stop = asyncio.Event()

    async def consume() -> None:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=50, max_records=2000)
            now = time.time()
            for records in batches.values():
                for r in records:
                    if dict(r.headers or ()).get("ce_type") == REPEAT_TYPE:
                        continue
                    try:
                        tid = json.loads(r.value)["ticket_id"]
                    except (ValueError, KeyError, TypeError):
                        continue
                    if tid in published and tid not in arrived:
                        arrived[tid] = now

    try:
        partitions = [TopicPartition(t, 0) for t in unit_topics]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        reader = asyncio.create_task(consume())
        scrapes = {service: running.metrics(service) for service in ("intake", "router", "sla")}
        before = scrapes["router"]
        snap = cpu_snapshot(running.stack)
        n = int(rate * seconds)
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.2
        futures = []
        lag_max = 0.0
        marks = {0, n // 3, 2 * n // 3}
        thirds: list[tuple[float, object]] = []  # (time, CPU snapshot) at the start of each third, and at the end
        for i in range(n):
            if i in marks:
                thirds.append((loop.time(), cpu_snapshot(running.stack)))
            due = t0 + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag_max = max(lag_max, -delay)
            e = dict(events[i % len(events)])
            tid = f"{tag}{i:06d}"
            e["event_id"] = tid
            # a distinct address per event: repeated templates would otherwise be merged as repeat reports (并单)
            e["address"] = f"{e['address']}{tag_no}{i:06d}室"
            at = datetime.now(CHINA_TZ)
            e["occurred_at"] = at.isoformat()
            published[tid] = time.time()
            futures.append(await producer.send(raw_topic, json.dumps(e, ensure_ascii=False).encode(),
                                               key=str(e["jurisdiction"]).encode()))
        await asyncio.gather(*futures)
        thirds.append((loop.time(), cpu_snapshot(running.stack)))
        window = loop.time() - t0
        at_end = len(arrived)
        wall_end = time.time()
        # stragglers: wait until nothing new arrives for 3 s, or --drain
        last_count, last_change = len(arrived), time.time()
        while time.time() - wall_end < drain and time.time() - last_change < 3.0:
            await asyncio.sleep(0.2)
            if len(arrived) != last_count:
                last_count, last_change = len(arrived), time.time()
        drained = time.time() - wall_end
        stop.set()
        await reader
        snap2 = cpu_snapshot(running.stack)
        scrapes_after = {service: running.metrics(service) for service in scrapes}
        after = scrapes_after["router"]
    finally:
        stop.set()
        await consumer.stop()
        await producer.stop()

    lat = sorted((arrived[t] - published[t]) * 1000 for t in arrived)
    order = sorted(arrived, key=lambda t: published[t])
    third = max(1, len(order) // 3)
    first = [(arrived[t] - published[t]) * 1000 for t in order[:third]]
    last = [(arrived[t] - published[t]) * 1000 for t in order[-third:]]
    print(f"--- rate {rate:g} events/s for {seconds:g} s: published {n} in {window:.1f} s "
          f"(publisher fell behind its schedule by at most {lag_max * 1000:.0f} ms)")
    print(f"  work orders seen on unit topics: {len(lat)} ({len(lat) / max(n, 1):.0%} of the events; the rest became "
          f"triage items, redirects or repeat reports or did not arrive), {at_end} of them by the end of publishing, "
          f"waited {drained:.1f} s for stragglers")
    if lat:
        print(f"  publish -> unit topic latency: p50 {pct(lat, 50):.0f} ms, p95 {pct(lat, 95):.0f} ms, "
              f"p99 {pct(lat, 99):.0f} ms, max {lat[-1]:.0f} ms, mean {sum(lat) / len(lat):.0f} ms")
        print(f"  trend: first third p50 {pct(first, 50):.0f} ms / p99 {pct(first, 99):.0f} ms; last third p50 "
              f"{pct(last, 50):.0f} ms / p99 {pct(last, 99):.0f} ms")
        # kept up: the latency does not grow through the window, and when publishing stops at most about a second
        # of work orders is still on its way (a run that starts behind can show a flat trend at a high latency)
        growing = pct(last, 50) > 2 * pct(first, 50) + 250
        behind = len(lat) - at_end
        backlog = behind > max(1.0, len(lat) / window)
        why = [w for w, bad in (("latency grows", growing),
                                (f"{behind} work orders still on their way when publishing stopped", backlog)) if bad]
        print(f"  sustained: {'NO (' + '; '.join(why) + ')' if why else 'yes'}; "
              f"work orders per second during publishing: {at_end / window:.1f}")
        verdict = "MET" if pct(lat, 99) <= TARGET_P99_MS else "NOT MET"
        print(f"  target p99 <= {TARGET_P99_MS:.0f} ms: {verdict} ({pct(lat, 99):.0f} ms)")
    if len(thirds) == 4:  # does any process use more CPU as the run goes on (at a constant rate)?
        print("  CPU by third of the publishing window (% of one core; first / second / last third):")
        for name in thirds[-1][1].seconds:  # type: ignore[attr-defined]
            shares = []
            for (a_t, a), (b_t, b) in zip(thirds, thirds[1:]):
                used = b.seconds.get(name, 0.0) - a.seconds.get(name, 0.0)  # type: ignore[attr-defined]
                shares.append("n/a" if used < 0 else f"{used / max(b_t - a_t, 1e-9) * 100:.0f}")
            print(f"    {name:<20} {' / '.join(shares)}")
    hb, _, cb = histogram(parse_metrics(before), "hotline_dispatch_latency_seconds")
    ha, sa_, ca = histogram(parse_metrics(after), "hotline_dispatch_latency_seconds")
    _, sb_, _ = histogram(parse_metrics(before), "hotline_dispatch_latency_seconds")
    h = diff_hist(ha, hb)
    count = ca - cb
    if count > 0:
        q = {p: histogram_quantile(h, p) * 1000 for p in (0.5, 0.95, 0.99)}
        print(f"  router hotline_dispatch_latency_seconds over the window ({int(count)} observations, buckets "
              f"{', '.join(f'{le:g}' for le, _ in h if le != float('inf'))} s): p50 {q[0.5]:.0f} ms, "
              f"p95 {q[0.95]:.0f} ms, p99 {q[0.99]:.0f} ms (interpolated within buckets), mean "
              f"{(sa_ - sb_) / count * 1000:.0f} ms")
    print(f"  {batch_sizes(scrapes, scrapes_after)}")
    print("  CPU over the window:")
    print("\n".join(cpu_delta(snap, snap2, window + drained)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="200", help="comma-separated rates (events/s), run one after another")
    ap.add_argument("--rate", type=float, default=None, help="a single rate (overrides --rates)")
    ap.add_argument("--seconds", type=float, default=45.0, help="publishing time per rate")
    ap.add_argument("--drain", type=float, default=60.0, help="most seconds to wait for stragglers per rate")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--quick", action="store_true", help="20 events/s for 8 s")
    ap.add_argument("--no-probe", dest="probe", action="store_false",
                    help="skip the broker hop probe (one aiokafka hop at several fetch_max_wait_ms)")
    ap.add_argument("--root", type=Path, default=None, help="directory of the embedded stack (default: temp dir)")
    args = ap.parse_args()
    rates = [args.rate] if args.rate else [float(r) for r in args.rates.split(",")]
    if args.quick:
        rates, args.seconds, args.drain = [20.0], 8.0, 20.0
    header("dispatch latency: publish -> work order on hotline.unit.<code>", args)

    from services.demo.stack import start
    from services.platform.embedded import stop_on_signals

    stop_on_signals()
    router = Router.load()
    events = templates(router, 2000, args.seed)
    print(f"{len(events)} event templates from the sample generator")
    with work_dir(args.root, "hotline-bench-latency-") as root:
        running = start(root, router, sla_clock="wall", partitions=args.partitions)
        print(f"embedded stack + 3 workers up ({root}), SLA clock: wall")
        try:
            time.sleep(3)
            if args.probe:
                print("broker hop probe (aiokafka producer -> consumer on the embedded Tansu, 100 messages at 20/s):")
                for wait_ms in (1500, 500, 100, 10):
                    lat = asyncio.run(hop_probe(running.settings.kafka_bootstrap, wait_ms))
                    print(f"  consumer fetch_max_wait_ms={wait_ms:>4}: n={len(lat)} p50 {pct(lat, 50):.0f} ms, "
                          f"p99 {pct(lat, 99):.0f} ms, max {lat[-1]:.0f} ms")
            asyncio.run(phase(running, router, events, 5.0, 4.0, 15.0, "W", 9))  # warm-up: connections, caches, JIT-free
            print("(the 5 events/s phase above is a warm-up)")
            for k, rate in enumerate(rates):
                asyncio.run(phase(running, router, events, rate, args.seconds, args.drain, f"L{k}R", k + 1))
        finally:
            running.stop()
    footer()


if __name__ == "__main__":
    main()
