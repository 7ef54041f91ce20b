"""``hotline replay``: run files of events, unit updates and the dispatch desk's rulings through the pipeline and
write the results."""

from __future__ import annotations

import gc
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.domain.deadlines import planning_cache
from services.domain.dispatch import Routes
from services.domain.scorecards import compute as compute_scorecards, in_window
from services.domain.sla import SlaRules
from services.platform.settings import Settings
from services.replay.inputs import stream
from services.replay.pipeline import Pipeline


# cycles whose planned escalations the replay keeps (about 4 KB each, so up to 1 GB): more than the tickets open at
# once in a history of a million events; far more than a worker keeps
PLANNING_CACHE = 1 << 18
# the same default as HOTLINE_SCORECARD_WINDOW_DAYS; the command line passes the setting
SCORECARD_WINDOW_DAYS: int = Settings.model_fields["scorecard_window_days"].default


@dataclass
class ReplayResult:
    pipeline: Pipeline
    summary: dict[str, Any]
    until: datetime | None  # where the clock stopped: --until, else the last input's time
    scorecard_window_days: int = SCORECARD_WINDOW_DAYS


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector. A replay builds millions of long-lived objects (states, work orders,
    escalations) that hold no reference cycles, so each collection finds nothing but walks them all again; with
    the defaults that was about a quarter of the replay's time. Reference counting still frees everything.
    Afterwards the objects are frozen (``gc.freeze``), so that the first collection after the run does not walk
    them all once more; frozen objects are still freed by reference counting."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def run(events: Path, updates: Path | None, router: Routes, rules: SlaRules, *, rulings: Path | None = None,
        until: datetime | None = None, max_returns: int = 2, progress: Callable[[int], None] | None = None,
        scorecard_window_days: int = SCORECARD_WINDOW_DAYS) -> ReplayResult:
    """``until``: where the clock stops (default: the time of the last input line, event, update or ruling).
    ``scorecard_window_days``: the unit scorecards cover the tickets opened this many days before that moment
    and every ticket still open, as ``hotline report`` on the database does (HOTLINE_SCORECARD_WINDOW_DAYS)."""
    with _collector_paused(), planning_cache(PLANNING_CACHE):
        result = _run(events, updates, rulings, router, rules, until=until, max_returns=max_returns,
                      progress=progress)
    result.scorecard_window_days = scorecard_window_days
    result.summary["until"] = result.until.isoformat() if result.until else None
    result.summary["scorecard_window_days"] = scorecard_window_days
    return result


def _run(events: Path, updates: Path | None, rulings: Path | None, router: Routes, rules: SlaRules, *,
         until: datetime | None, max_returns: int, progress: Callable[[int], None] | None) -> ReplayResult:
    files = [(path, name) for path, name in ((events, "events"), (updates, "updates"), (rulings, "rulings")) if path]
    lines = stream(*files)
    pipeline = Pipeline(router=router, rules=rules, max_returns=max_returns)
    handlers = {"events": pipeline.event, "updates": pipeline.update, "rulings": pipeline.ruling}
    buckets: dict[str, Counter[str]] = {name: Counter() for name in handlers}
    last: datetime | None = None
    for line in lines:
        if until is not None and line.at is not None and line.at > until:
            pipeline.reject_after_until(line.stream, line.raw, origin=f"file:{line.path}", offset=line.number,
                                        until=until)
            buckets[line.stream]["rejected"] += 1
            continue
        if line.at is not None:
            # the same instant in UTC: the pipeline only compares it, with check times kept in UTC
            pipeline.advance(line.at.astimezone(UTC), inclusive=False)
            last = line.at if last is None else max(last, line.at)
        handle = handlers[line.stream]
        received = line.at or last or datetime.fromisoformat("1970-01-01T00:00:00+00:00")
        buckets[line.stream][handle(line.raw, origin=f"file:{line.path}", offset=line.number, received_at=received)] += 1
        if progress:
            progress(1)
    end = until or last
    if end is not None:
        pipeline.advance(end.astimezone(UTC), inclusive=True)
    summary = _summary(pipeline, buckets, lines.counts)
    return ReplayResult(pipeline, summary, end)


def _summary(p: Pipeline, buckets: dict[str, Counter[str]], counts: dict[str, int]) -> dict[str, Any]:
    def part(name: str) -> dict[str, int]:
        c = buckets[name]
        return {"read": counts.get(name, 0), "accepted": c["accepted"] + c["merged"], "rejected": c["rejected"],
                "duplicates": c["duplicate"], "merged": c["merged"]}

    parts = {name: part(name) for name in buckets}
    events = parts["events"]
    return {
        **{k: sum(pt[k] for pt in parts.values()) for k in ("read", "accepted", "rejected", "duplicates")},
        "merged": events["merged"],
        "dispatched": len(p.dispatched),
        "work_orders": len(p.work_orders),
        "triage": p.outcomes["triage"],
        "redirected": p.outcomes["redirect"],
        "closed_by_desk": p.outcomes["close"],
        "escalations": dict(sorted(p.escalation_kinds.items())),
        **parts,
    }


def _write_lines(path: Path, lines: Iterable[bytes]) -> None:
    with path.open("wb") as f:
        for line in lines:
            f.write(line + b"\n")


def _reject_line(line: bytes) -> bytes:
    """A dead letter with its input line number as ``line`` (the ``offset`` of a file input)."""
    record = json.loads(line)
    return json.dumps({**record, "line": record["offset"]}, ensure_ascii=False).encode()


def write(result: ReplayResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    p = result.pipeline
    _write_lines(out / "work_orders.jsonl", p.work_orders.sorted_lines())  # by dispatch time, then id
    _write_lines(out / "escalations.jsonl", p.escalations.sorted_lines())  # by time, then id
    _write_lines(out / "triage.jsonl", p.triage.lines())
    _write_lines(out / "rejects.jsonl", map(_reject_line, p.rejects.lines()))
    reports = p.campaign_reports(result.until) if result.until else []
    (out / "campaigns.json").write_text(
        json.dumps([json.loads(r.model_dump_json()) | {"campaign_id": r.campaign_id} for r in reports],
                   ensure_ascii=False, indent=2), encoding="utf-8")
    history = {cid: [json.loads(r.model_dump_json()) for r in s.history] for cid, s in p.campaign_states.items()}
    (out / "campaign_history.json").write_text(json.dumps(history, ensure_ascii=False, indent=1), encoding="utf-8")
    scores = compute_scorecards(in_window(p.tickets.values(), result.until, result.scorecard_window_days),
                                result.until) if result.until else []
    (out / "scorecards.json").write_text(json.dumps([s.as_dict() for s in scores], ensure_ascii=False, indent=1),
                                         encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(result.summary, ensure_ascii=False, indent=2), encoding="utf-8")
