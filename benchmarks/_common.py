"""Shared helpers for the benchmark scripts: machine facts, load, memory, CPU accounting, /metrics parsing.

Benchmarks print figures; they are never tests and assert nothing about speed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import platform
import re
import resource
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return (f"machine: {os.cpu_count()} cores ({cpu}), {mem:.1f} GiB RAM, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def load() -> str:
    a, b, c = os.getloadavg()
    return f"{a:.2f} {b:.2f} {c:.2f}"


def revision() -> str:
    """The commit the figures belong to, and whether the service code differs from it (others edit concurrently)."""
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %ad", "--date=iso"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "services", "schemas"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "revision: unknown"
    changed = len(dirty.splitlines())
    return f"revision: {head or '?'}" + (f" + {changed} uncommitted file(s) under services/ schemas/" if changed else "")


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """A benchmark's own topic on the embedded broker (replication factor 1)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()



@contextmanager
def work_dir(root: Path | None, prefix: str) -> Iterator[Path]:
    """Where a benchmark's embedded stack keeps its files: ``root`` (``--root``, kept afterwards), or a temporary
    directory removed afterwards, also when the benchmark fails."""
    if root is not None:
        yield root
        return
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)

def header(title: str, args: object) -> None:
    print(f"== {title}")
    print(machine())
    print(revision())
    print(f"args: {vars(args) if hasattr(args, '__dict__') else args}")
    print(f"load average (1/5/15 min) before: {load()}")
    sys.stdout.flush()


def footer() -> None:
    print(f"load average (1/5/15 min) after: {load()}")
    sys.stdout.flush()


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile of a list (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


# --- CPU accounting of the processes the embedded stack runs --------------------------------------------------


@dataclass
class CpuSnapshot:
    seconds: dict[str, float] = field(default_factory=dict)


def _tree_cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def cpu_snapshot(stack: object) -> CpuSnapshot:
    """User+system CPU seconds of each worker, the broker, PostgreSQL (postmaster and its backends) and this
    process. A backend that exited between two snapshots is lost from the count (ours are long-lived)."""
    out: dict[str, float] = {}
    for name, proc in getattr(stack, "workers", {}).items():
        try:
            out[name] = _tree_cpu(psutil.Process(proc.pid))
        except psutil.Error:
            pass
    broker = getattr(stack, "broker", None)
    if broker is not None:
        try:
            out["broker (tansu)"] = _tree_cpu(psutil.Process(broker.pid))
        except psutil.Error:
            pass
    db = getattr(stack, "database", None)
    if db is not None:
        try:
            info = db.get_postmaster_info()
            out["postgresql"] = _tree_cpu(psutil.Process(info.process.pid)) if info is not None else 0.0
        except Exception:
            pass
    me = psutil.Process().cpu_times()
    out["benchmark process"] = me.user + me.system
    return CpuSnapshot(out)


def cpu_delta(before: CpuSnapshot, after: CpuSnapshot, wall: float) -> list[str]:
    lines = []
    for name, value in after.seconds.items():
        used = value - before.seconds.get(name, 0.0)
        if used < 0:  # a child (a PostgreSQL backend) exited between the snapshots and took its CPU time along
            lines.append(f"  {name:<20}      n/a  (a child process exited during the window)")
            continue
        lines.append(f"  {name:<20} {used:8.1f} CPU-s  ({used / wall * 100:5.1f} % of one core over {wall:.1f} s)")
    return lines


# --- Prometheus text format --------------------------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+eE0-9.naifNAIF]+)$')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def histogram(samples: Iterable[tuple[str, dict[str, str], float]], name: str,
              where: dict[str, str] | None = None) -> tuple[list[tuple[float, float]], float, float]:
    """(cumulative buckets [(le, count)], sum, count) of one histogram, summed over series matching ``where``."""
    buckets: dict[float, float] = {}
    total = count = 0.0
    for metric, labels, value in samples:
        if where and any(labels.get(k) != v for k, v in where.items()):
            continue
        if metric == f"{name}_bucket":
            le = float("inf") if labels["le"] in ("+Inf", "inf") else float(labels["le"])
            buckets[le] = buckets.get(le, 0.0) + value
        elif metric == f"{name}_sum":
            total += value
        elif metric == f"{name}_count":
            count += value
    return sorted(buckets.items()), total, count


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket that holds the rank."""
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    rank = q * buckets[-1][1]
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le  # the highest finite bound, as Prometheus does
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


def diff_hist(after: list[tuple[float, float]], before: list[tuple[float, float]]) -> list[tuple[float, float]]:
    b = dict(before)
    return [(le, c - b.get(le, 0.0)) for le, c in after]


def batch_sizes(before: dict[str, str], after: dict[str, str]) -> str:
    """Each service's mean inputs per batch between two scrapes of its /metrics (``hotline_batch_inputs``)."""
    parts = []
    for service in before:
        _, sb, cb = histogram(parse_metrics(before[service]), "hotline_batch_inputs", {"service": service})
        _, sa, ca = histogram(parse_metrics(after[service]), "hotline_batch_inputs", {"service": service})
        n = ca - cb
        parts.append(f"{service} {(sa - sb) / n:.1f} ({int(n):,} batches)" if n > 0 else f"{service} no batches")
    return "mean inputs per batch: " + ", ".join(parts)
