"""``hotline replay``: run files of events and unit updates through the pipeline and write the results."""

from __future__ import annotations

import gc
import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from services.domain.dispatch import Routes
from services.domain.scorecards import compute as compute_scorecards, in_window
from services.domain.sla import SlaRules
from services.platform.settings import Settings
from services.replay.inputs import merge, read_lines
from services.replay.pipeline import Pipeline


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


def run(events: Path, updates: Path | None, router: Routes, rules: SlaRules, *, until: datetime | None = None,
        max_returns: int = 2, progress: Callable[[int], None] | None = None,
        scorecard_window_days: int = SCORECARD_WINDOW_DAYS) -> ReplayResult:
    """``until``: where the clock stops (default: the time of the last input line, event or update).
    ``scorecard_window_days``: the unit scorecards cover the tickets opened this many days before that moment
    and every ticket still open, as ``hotline report`` on the database does (HOTLINE_SCORECARD_WINDOW_DAYS)."""
    with _collector_paused():
        result = _run(events, updates, router, rules, until=until, max_returns=max_returns, progress=progress)
    result.scorecard_window_days = scorecard_window_days
    result.summary["until"] = result.until.isoformat() if result.until else None
    result.summary["scorecard_window_days"] = scorecard_window_days
    return result


def _run(events: Path, updates: Path | None, router: Routes, rules: SlaRules, *, until: datetime | None,
         max_returns: int, progress: Callable[[int], None] | None) -> ReplayResult:
    event_lines = read_lines(events, "events")
    update_lines = read_lines(updates, "updates") if updates else []
    pipeline = Pipeline(router=router, rules=rules, max_returns=max_returns)
    buckets: dict[str, Counter[str]] = {"events": Counter(), "updates": Counter()}
    last: datetime | None = None
    for line in merge(event_lines, update_lines):
        if until is not None and line.at is not None and line.at > until:
            pipeline.reject_after_until(line.stream, line.raw, origin=f"file:{line.path}", offset=line.number,
                                        until=until)
            buckets[line.stream]["rejected"] += 1
            continue
        if line.at is not None:
            # the same instant in UTC: the pipeline only compares it, with check times kept in UTC
            pipeline.advance(line.at.astimezone(UTC), inclusive=False)
            last = line.at if last is None else max(last, line.at)
        handle = pipeline.event if line.stream == "events" else pipeline.update
        received = line.at or last or datetime.fromisoformat("1970-01-01T00:00:00+00:00")
        buckets[line.stream][handle(line.raw, origin=f"file:{line.path}", offset=line.number, received_at=received)] += 1
        if progress:
            progress(1)
    end = until or last
    if end is not None:
        pipeline.advance(end.astimezone(UTC), inclusive=True)
    return ReplayResult(pipeline, _summary(pipeline, buckets, len(event_lines), len(update_lines)), end)


def _summary(p: Pipeline, buckets: dict[str, Counter[str]], n_events: int, n_updates: int) -> dict[str, Any]:
    def part(name: str, n: int) -> dict[str, int]:
        c = buckets[name]
        return {"read": n, "accepted": c["accepted"] + c["merged"], "rejected": c["rejected"],
                "duplicates": c["duplicate"], "merged": c["merged"]}

    events, updates = part("events", n_events), part("updates", n_updates)
    kinds = Counter(e.kind.value for e in p.escalations)
    return {
        **{k: events[k] + updates[k] for k in ("read", "accepted", "rejected", "duplicates")},
        "merged": events["merged"],
        "dispatched": len({w.ticket_id for w in p.work_orders}),
        "work_orders": len(p.work_orders),
        "triage": sum(1 for t in p.triage if t.decision.outcome == "triage"),
        "redirected": sum(1 for t in p.triage if t.decision.outcome == "redirect"),
        "escalations": dict(sorted(kinds.items())),
        "events": events,
        "updates": updates,
    }


def _dump(model: BaseModel) -> str:
    return model.model_dump_json(exclude_none=False)


def write(result: ReplayResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    p = result.pipeline
    orders = sorted(p.work_orders, key=lambda w: (w.dispatched_at, w.work_order_id))
    escalations = sorted(p.escalations, key=lambda e: (e.at, e.escalation_id))
    (out / "work_orders.jsonl").write_text("".join(_dump(w) + "\n" for w in orders), encoding="utf-8")
    (out / "escalations.jsonl").write_text("".join(_dump(e) + "\n" for e in escalations), encoding="utf-8")
    (out / "triage.jsonl").write_text("".join(_dump(t) + "\n" for t in p.triage), encoding="utf-8")
    rejects = [{**json.loads(_dump(r)), "line": r.offset} for r in p.rejects]
    (out / "rejects.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects),
                                       encoding="utf-8")
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
