"""Classifier speed: texts per second through ``Router.route`` on one core.

``Router.route`` is the whole classifier the router worker, ``hotline classify`` and ``hotline replay`` call per
event: the Aho–Corasick scan of the content, the 街镇 lookup in the address, the emergency and out-of-scope screens,
rule scoring and the decision with its citations and Chinese explanation. The texts are the reports of a generated
sample (``services.demo.sample``), so every jurisdiction, source and template is in the mix. The process runs on
one thread, so the figure is one core's.

    .venv/bin/python benchmarks/classify_throughput.py            # 20,000 texts, 5 passes
    .venv/bin/python benchmarks/classify_throughput.py --quick    # 2,000 texts, 2 passes
    .venv/bin/python benchmarks/classify_throughput.py --profile 12  # and where one pass spends its time
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
from collections import Counter

from _common import footer, header

from schemas import IntakeEvent
from services.demo.sample import generate
from services.domain.intake import accept_event
from services.domain.routing import Router

TARGET = 50_000  # texts per second on one core (issue: router, item 9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=20_000, help="reports in the generated sample")
    parser.add_argument("--passes", type=int, default=5, help="timed passes over all texts (the best is reported)")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--quick", action="store_true", help="2,000 texts, 2 passes")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="after the timed passes, one pass under cProfile: its top N functions by own time")
    args = parser.parse_args()
    if args.quick:
        args.texts, args.passes = 2_000, 2
    header("classifier throughput (services.domain.routing.Router.route, one core)", args)

    router = Router.load()
    sample = generate(router, n_events=args.texts, seed=args.seed)
    events = [e for e in map(accept_event, sample.events) if isinstance(e, IntakeEvent)]
    outcomes = Counter(router.route(e).outcome for e in events)  # also warms the caches of the first call
    print(f"texts: {len(events):,} valid reports of {len(sample.events):,} sample lines; mean content "
          f"{sum(len(e.content) for e in events) / len(events):.0f} characters; outcomes {dict((str(k), v) for k, v in outcomes.items())}")

    gc.disable()
    rates = []
    for n in range(1, args.passes + 1):
        started = time.perf_counter()
        for event in events:
            router.route(event)
        seconds = time.perf_counter() - started
        rates.append(len(events) / seconds)
        print(f"pass {n}: {seconds:.2f} s -> {rates[-1]:,.0f} texts/s ({seconds / len(events) * 1e6:.1f} µs per text)")
    gc.enable()
    best = max(rates)
    verdict = "met" if best >= TARGET else "NOT MET"
    print(f"best {best:,.0f} texts/s, median {sorted(rates)[len(rates) // 2]:,.0f}; target >= {TARGET:,} texts/s on "
          f"one core: {verdict}")
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        for event in events:
            router.route(event)
        profile.disable()
        print(f"--- cProfile of one pass, top {args.profile} by own time ---")
        pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(args.profile)
    footer()


if __name__ == "__main__":
    main()
