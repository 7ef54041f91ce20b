"""Offline replay throughput: generate a realistic sample, then time ``services.replay.runner.run`` end to end.

    .venv/bin/python benchmarks/replay_throughput.py                 # 100,000 events (~2.2 update lines each)
    .venv/bin/python benchmarks/replay_throughput.py --quick         # 2,000 events, smoke run
    .venv/bin/python benchmarks/replay_throughput.py --events 10000 --profile 30   # plus cProfile top 30
    .venv/bin/python benchmarks/replay_throughput.py --events 20000 --breakdown    # plus where the memory is

The sample is generated in a child process (so the peak RSS printed is the replay's alone, plus imports) and
cached under --data-dir by (events, seed, digest of the generator, templates and rulebooks). The timed part is ``run(...)``: reading and merging both files,
intake, routing, SLA lifecycle, escalation sweeps and campaign evaluations; writing the output files is timed
separately (``runner.write``). The replay line also gives the process's CPU time: on a shared machine, wall time
above it is time spent waiting for a core.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import multiprocessing
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Timer, footer, header, peak_rss_mib, rss_mib  # noqa: E402

TARGET_EVENTS_PER_S = 20_000


def _generate(n_events: int, seed: int, directory: str) -> tuple[int, int, int, float]:
    from services.demo.sample import generate
    from services.domain.routing import Router

    t = Timer()
    sample = generate(Router.load(), n_events=n_events, seed=seed)
    sample.write(Path(directory))
    return len(sample.events), len(sample.updates), len(sample.rulings), t.seconds


def _inputs_digest() -> str:
    """What the generated sample depends on (generator, templates, rulebooks): a changed rulebook routes
    differently, and cached unit updates would no longer fit the work orders."""
    import hashlib

    root = Path(__file__).resolve().parent.parent
    files = sorted([*(root / "services" / "demo").glob("sample.py"), *(root / "services" / "demo").glob("*.yaml"),
                    *(root / "services" / "router" / "rulebooks").glob("*.yaml")])
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:10]


def _deep_size(obj: object, seen: set[int]) -> int:
    """Bytes held by ``obj`` and everything it reaches that is not in ``seen`` (which it extends)."""
    total, stack = 0, [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, type):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        if isinstance(o, dict):
            stack += [*o.keys(), *o.values()]
        elif isinstance(o, list | tuple | set | frozenset):
            stack += o
        else:
            stack += [v for v in (getattr(o, "__dict__", None), getattr(o, "__pydantic_fields_set__", None))
                      if v is not None]
            stack += [getattr(o, n) for n in getattr(type(o), "__slots__", ()) if hasattr(o, n)]
    return total


def _breakdown(pipeline: object) -> None:
    """What each part of the replay's state holds; the rulebooks and rules, shared, are counted apart."""
    seen: set[int] = set()
    shared = _deep_size(pipeline.router, seen) + _deep_size(pipeline.rules, seen)  # type: ignore[attr-defined]
    shared_ids = set(seen)
    print(f"--- memory by part (objects reached, each counted once; rulebooks and rules {shared / 2**20:.1f} MiB)")
    for name, value in vars(pipeline).items():
        if name in ("router", "rules"):
            continue
        size = _deep_size(value, seen)
        count = f", {len(value):,} items" if hasattr(value, "__len__") else ""
        print(f"  {name:<16} {size / 2**20:9.1f} MiB{count}")
    from services.domain import deadlines
    print(f"  {'deadline plans':<16} {_deep_size(deadlines._CANDIDATES, seen) / 2**20:9.1f} MiB, "
          f"{len(deadlines._CANDIDATES):,} items (a cache of at most {deadlines._CANDIDATES_MAX:,} cycle shapes)")
    tickets, routing = pipeline.tickets, pipeline.routing  # type: ignore[attr-defined]
    for label, store in (("ticket state", tickets), ("routing record", routing)):
        keys = list(store)
        live = [store[k] for k in keys if not store.is_packed(k)][:2000]
        packed = [store[k] for k in keys if store.is_packed(k)][:2000]
        marginal = set(shared_ids)  # what one more state adds: shared objects (time zones, enums) count once
        for group, states in (("not packed", live), ("settled", packed)):
            if states:
                objects = sum(_deep_size(v, marginal) for v in states) / len(states)
                text = sum(len(v.model_dump_json().encode()) for v in states) / len(states)
                print(f"  one {label} ({group}, mean of {len(states)}): {objects / 1024:.1f} KB as objects, "
                      f"{text / 1024:.1f} KB as JSON")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000, help="events to generate (default 100000)")
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--quick", action="store_true", help="2,000 events: a smoke run")
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "hotline-bench",
                    help="where generated samples are cached")
    ap.add_argument("--regenerate", action="store_true", help="ignore a cached sample")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="run the replay under cProfile and print the top N functions (slower; figures inflated)")
    ap.add_argument("--write", action="store_true", help="also time runner.write of the output files")
    ap.add_argument("--breakdown", action="store_true",
                    help="after the run, the memory each part of the replay's state holds (a slow walk of every object)")
    args = ap.parse_args()
    if args.quick:
        args.events = 2_000
    header("replay throughput (services.replay.runner.run)", args)

    directory = args.data_dir / f"replay-{args.events}-{args.seed}-{_inputs_digest()}"
    events, updates, rulings = (directory / f"{name}.jsonl" for name in ("events", "updates", "rulings"))
    if args.regenerate or not (events.exists() and updates.exists() and rulings.exists()):
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            n_ev, n_up, n_ru, secs = pool.apply(_generate, (args.events, args.seed, str(directory)))
        print(f"generated {args.events} events -> {n_ev} event lines + {n_up} update lines + {n_ru} rulings in "
              f"{secs:.1f} s ({directory})")
    else:
        print(f"using cached sample {directory}")
    event_lines = events.read_bytes().count(b"\n")
    update_lines = updates.read_bytes().count(b"\n") + rulings.read_bytes().count(b"\n")
    size_mb = sum(path.stat().st_size for path in (events, updates, rulings)) / 1e6
    print(f"input: {event_lines} event lines + {update_lines} update and ruling lines = {event_lines + update_lines} "
          f"lines, {size_mb:.1f} MB")

    from services.domain.routing import Router
    from services.domain.sla import SlaRules
    from services.replay.runner import run, write

    router, rules = Router.load(), SlaRules.load()
    gc.collect()
    base = rss_mib()
    print(f"RSS before the replay (imports, rulebooks): {base:.0f} MiB")
    profiler = cProfile.Profile() if args.profile else None
    t, cpu = Timer(), time.process_time()
    if profiler:
        profiler.enable()
    result = run(events, updates, router, rules, rulings=rulings)
    if profiler:
        profiler.disable()
    secs, cpu = t.seconds, time.process_time() - cpu
    lines = event_lines + update_lines
    s = result.summary
    print(f"replay: {secs:.2f} s  -> {lines / secs:,.0f} lines/s, {event_lines / secs:,.0f} event lines/s "
          f"({args.events / secs:,.0f} generated events/s); CPU {cpu:.2f} s")
    print(f"  summary: read {s['read']}, accepted {s['accepted']}, rejected {s['rejected']}, duplicates "
          f"{s['duplicates']}, merged {s['merged']}, work orders {s['work_orders']}, triage {s['triage']}, "
          f"redirected {s['redirected']}, escalations {sum(s['escalations'].values())}")
    tickets = result.pipeline.tickets
    print(f"  tickets held: {len(tickets)} ({tickets.packed} of them settled, kept as JSON); RSS now "
          f"{rss_mib():.0f} MiB; peak RSS {peak_rss_mib():.0f} MiB "
          f"(+{peak_rss_mib() - base:.0f} MiB over the baseline)")
    verdict = "MET" if event_lines / secs >= TARGET_EVENTS_PER_S else "NOT MET"
    print(f"  target >= {TARGET_EVENTS_PER_S:,} events/s: {verdict} ({event_lines / secs:,.0f} event lines/s)")
    if args.breakdown:
        _breakdown(result.pipeline)
    if args.write:
        with tempfile.TemporaryDirectory() as out:
            t = Timer()
            write(result, Path(out))
            print(f"write of the output files: {t.seconds:.2f} s; replay and write together {secs + t.seconds:.2f} s "
                  f"-> {event_lines / (secs + t.seconds):,.0f} event lines/s")
    if profiler:
        for order in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(profiler, stream=buf).strip_dirs().sort_stats(order).print_stats(args.profile)
            print(f"--- cProfile, top {args.profile} by {order} ---")
            print("\n".join(line for line in buf.getvalue().splitlines() if line.strip())[:20000])
    footer()


if __name__ == "__main__":
    main()
