"""`hotline sample` writes the demo's kind of input for replay and classify."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from services.cli import app
from services.demo.sample import generate


def test_sample_writes_the_files_the_demo_uses(router, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(app, ["sample", "--events", "60", "--seed", "7", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    expected = generate(router, n_events=60, seed=7)
    assert (tmp_path / "s" / "events.jsonl").read_bytes() == b"".join(line + b"\n" for line in expected.events)
    assert (tmp_path / "s" / "updates.jsonl").read_bytes() == b"".join(line + b"\n" for line in expected.updates)
    assert (tmp_path / "s" / "rulings.jsonl").read_bytes() == b"".join(line + b"\n" for line in expected.rulings)
    assert expected.rulings and f"--rulings {tmp_path / 's' / 'rulings.jsonl'}" in " ".join(result.stdout.split())
    out = " ".join(result.stdout.split())
    assert expected.describe() in out
    assert expected.end is not None and f"--until {expected.end.isoformat()}" in out


def test_sample_lines_add_up(router) -> None:  # type: ignore[no-untyped-def]
    sample = generate(router, n_events=400, seed=12345)
    assert len(sample.events) == sample.reports + sample.resent + sample.repeats + sample.broken
    assert sample.reports == 400 and sample.resent > 0 and sample.repeats > 0 and sample.broken == 5
