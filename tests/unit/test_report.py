from __future__ import annotations

from pathlib import Path

from services.demo.sample import generate
from services.replay.runner import run, write
from services.sla.report import from_replay, render
from tests.conftest import cst


def test_report_renders_burn_up_charts_and_scorecards(router, rules, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    events, updates, rulings = generate(router, n_events=150, seed=3).write(tmp_path / "in")
    write(run(events, updates, router, rules, rulings=rulings, until=cst("2025-07-10 00:00")), tmp_path / "replay")
    history, scores = from_replay(tmp_path / "replay")
    path = render(history, rules.campaigns, scores, tmp_path / "report", "test")
    text = path.read_text(encoding="utf-8")
    assert "| qingpu-2025-hotspots-12345 |" in text and "响应率 (response)" in text
    row = next(line for line in text.splitlines() if line.startswith("| qingpu-2025-hotspots-12345 |"))
    enrolled, planned, resolved, rate = (cell.strip() for cell in row.split("|")[2:6])
    assert planned == "1864" and int(enrolled) < 1864  # the demo sample enrols a few of the plan's tickets
    assert rate == f"{int(resolved) / 1864:.1%}"  # a share of the plan's 1864, not of those enrolled
    pngs = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert "campaign-qingpu-2025-hotspots-12345.png" in pngs
    for name in pngs:
        data = (tmp_path / "report" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        assert f"]({name})" in text
    assert any(s["dispatches"] > 0 and s["response_ratio"] is not None for s in scores)
