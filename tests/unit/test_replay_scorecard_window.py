"""The replay's unit scorecards cover the same tickets as the database's (``hotline report`` without --replay):
those opened in the HOTLINE_SCORECARD_WINDOW_DAYS before the clock's end, and every ticket still open."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner

from services.cli import app
from services.demo.sample import generate
from services.domain.scorecards import compute
from services.domain.tickets import OPEN_FOR_UNIT
from services.replay.runner import run, write


def test_replay_scorecards_count_the_window_before_the_end(router, rules, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sample = generate(router, n_events=150, seed=3)  # 80 days of reports, clock end 20 days later
    events, updates, rulings = sample.write(tmp_path / "in")
    assert sample.end is not None
    result = run(events, updates, router, rules, rulings=rulings, until=sample.end, scorecard_window_days=90)
    write(result, tmp_path / "out")
    scores = json.loads((tmp_path / "out" / "scorecards.json").read_text(encoding="utf-8"))
    since = sample.end - timedelta(days=90)
    tickets = list(result.pipeline.tickets.values())
    covered = [t for t in tickets if t.opened_at >= since or t.status in OPEN_FOR_UNIT]
    assert 0 < len(covered) < len(tickets)  # some closed tickets are older than the window
    assert scores == [s.as_dict() for s in compute(covered, sample.end)]
    assert sum(s["dispatches"] for s in scores) < sum(s.dispatches for s in compute(tickets, sample.end))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["until"] == sample.end.isoformat() and summary["scorecard_window_days"] == 90


def test_replay_command_takes_the_window_from_the_setting(router, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from services.platform.settings import get_settings

    sample = generate(router, n_events=60, seed=5)
    events, updates, rulings = sample.write(tmp_path / "in")
    monkeypatch.setenv("HOTLINE_SCORECARD_WINDOW_DAYS", "30")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["replay", "--events", str(events), "--updates", str(updates),
                                          "--rulings", str(rulings), "--out", str(tmp_path / "out")])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["scorecard_window_days"] == 30
    # without --until the clock stops at the last input line's time, not at the sample's clock end
    from services.replay.inputs import read_lines

    last = max(line.at for path, stream in ((events, "events"), (updates, "updates"), (rulings, "rulings"))
               for line in read_lines(path, stream) if line.at is not None)
    assert summary["until"] == last.isoformat() and sample.end is not None and last < sample.end


def test_report_header_states_the_moment_and_the_window(router, rules, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sample = generate(router, n_events=60, seed=5)
    events, updates, rulings = sample.write(tmp_path / "in")
    assert sample.end is not None
    write(run(events, updates, router, rules, rulings=rulings, until=sample.end, scorecard_window_days=90), tmp_path / "replay")
    result = CliRunner().invoke(app, ["report", "--replay", str(tmp_path / "replay"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    since = sample.end - timedelta(days=90)
    assert f"Scorecards as of {sample.end.isoformat()}, over the tickets opened in the 90 days before " \
           f"(since {since.isoformat()}, HOTLINE_SCORECARD_WINDOW_DAYS)" in text
