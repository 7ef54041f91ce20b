from __future__ import annotations

import json
from pathlib import Path

from services.demo.sample import generate
from services.replay.runner import run, write
from tests.conftest import cst


def _sample(router, tmp_path: Path, n: int = 150):  # type: ignore[no-untyped-def]
    sample = generate(router, n_events=n, seed=7)
    return sample.write(tmp_path / "in")


def test_every_line_is_accounted_exactly_once(router, rules, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    events, updates, rulings = _sample(router, tmp_path)
    first = json.loads(events.read_bytes().split(b"\n")[0])
    far = [json.dumps({**first, "event_id": f"FAR-{i}", "occurred_at": at}).encode()
           for i, at in enumerate(("0001-01-01T00:30:00+08:00", "9999-12-31T23:00:00+08:00"))]  # beyond the clocks
    with events.open("ab") as f:
        f.write(b"\n\x00\x01garbage\n" + b"{" * 50 + b"\n" + b"\n".join(far) + b"\n")
    result = run(events, updates, router, rules, rulings=rulings)
    s = result.summary
    n_lines = sum(len(path.read_bytes().split(b"\n")) - 1 for path in (events, updates, rulings))
    assert s["read"] == n_lines and s["rulings"]["read"] > 0
    assert s["accepted"] + s["rejected"] + s["duplicates"] == s["read"]
    for part in ("events", "updates", "rulings"):
        p = s[part]
        assert p["accepted"] + p["rejected"] + p["duplicates"] == p["read"]
    assert s["duplicates"] > 0 and s["rejected"] >= 8 and s["dispatched"] > 0
    write(result, tmp_path / "out")
    rejects = [json.loads(x) for x in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == s["rejected"] and all(r["reason"] and r["error"] for r in rejects)
    assert sum(r["reason"] == "bad_timestamp" and r["field"] == "occurred_at" for r in rejects) >= len(far)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {"read", "accepted", "rejected", "duplicates", "merged", "dispatched"} <= set(summary)
    campaigns = json.loads((tmp_path / "out" / "campaigns.json").read_text())
    assert {c["campaign_id"] for c in campaigns} >= {"qingpu-2025-hotspots-12345", "qingpu-2025-iot-alert-push"}
    for c in campaigns:
        assert c["status"] in ("on_track", "at_risk", "met", "missed", "insufficient_data")
        assert set(c) >= {"enrolled", "resolved", "rate", "target", "deadline", "projected_rate"}


def test_replay_is_deterministic(router, rules, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    events, updates, rulings = _sample(router, tmp_path, n=80)
    outputs = []
    for k in range(2):
        write(run(events, updates, router, rules, rulings=rulings, until=cst("2025-07-15 00:00")), tmp_path / f"o{k}")
        outputs.append({p.name: p.read_bytes() for p in (tmp_path / f"o{k}").iterdir()})
    assert outputs[0] == outputs[1]


def test_until_cuts_the_clock_and_rejects_later_lines(router, rules, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    events, updates, rulings = _sample(router, tmp_path, n=80)
    result = run(events, updates, router, rules, rulings=rulings, until=cst("2025-05-01 00:00"))
    assert all(e.at <= cst("2025-05-01 00:00") for e in result.pipeline.escalations)
    late = [r for r in result.pipeline.rejects if r.reason == "after_until"]
    assert late and result.summary["accepted"] + result.summary["rejected"] + result.summary["duplicates"] == \
        result.summary["read"]
