"""What the demo prints: where a ticket went (a redirect names 110/119/120), the replay command that reproduces
it, and with --keep the addresses and environment lines to look inside; results on stdout, progress on stderr."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from types import SimpleNamespace

from typer.testing import CliRunner

from services.demo.runner import example_line, look_inside, replay_command
from services.demo.sample import generate
from services.platform.settings import Settings
from services.replay.runner import run
from tests.conftest import cst


def test_a_redirect_example_names_its_target() -> None:
    line = example_line({"ticket_id": "QP-1", "outcome": "redirect", "lead_unit": None, "redirect_to": "119",
                         "triage_reason": None, "explanation": "fire in progress"})
    assert "redirect → 119: fire in progress" in line
    line = example_line({"ticket_id": "QP-2", "outcome": "triage", "lead_unit": None, "redirect_to": None,
                         "triage_reason": "no_rule_matched", "explanation": "[x]"})
    assert "triage → no_rule_matched: \\[x]" in line  # escaped for rich markup
    line = example_line({"ticket_id": "QP-3", "outcome": "close", "lead_unit": None, "redirect_to": None,
                         "triage_reason": None, "explanation": "已告知"})
    assert "QP-3[/bold] close: 已告知" in line


def test_the_printed_replay_command_reproduces_the_demo_replay(router, rules, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from services.cli import app

    sample = generate(router, n_events=80, seed=11)
    files = sample.write(tmp_path / "sample")
    events, updates, rulings = files
    assert sample.end is not None
    command = shlex.split(replay_command(files, tmp_path / "replay", sample.end))
    assert command[0] == ".venv/bin/hotline" and command[1] == "replay"
    result = CliRunner().invoke(app, command[1:])
    assert result.exit_code == 0, result.output
    demo = run(events, updates, router, rules, rulings=rulings, until=sample.end)
    replayed = (tmp_path / "replay" / "escalations.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(replayed) == len(demo.pipeline.escalations)
    default = run(events, updates, router, rules)  # without --until it stops at the last input line, earlier
    assert default.until is not None and default.until < sample.end


def test_keep_prints_broker_database_and_environment(tmp_path: Path) -> None:
    running = SimpleNamespace(settings=Settings(kafka_bootstrap="127.0.0.1:41234"),
                              dsn="postgresql://postgres:@/postgres?host=/tmp/pg x",
                              stack=SimpleNamespace(ports={"intake": 1, "router": 2, "sla": 3}, logs=tmp_path),
                              metrics_url=lambda service: f"http://127.0.0.1:{ {'intake': 1, 'router': 2, 'sla': 3}[service] }/metrics")
    lines = look_inside(running, cst("2025-07-10 00:00"))  # type: ignore[arg-type]
    assert "  export HOTLINE_KAFKA_BOOTSTRAP=127.0.0.1:41234" in lines
    assert "  export HOTLINE_DATABASE_URL='postgresql://postgres:@/postgres?host=/tmp/pg x'" in lines
    assert any("hotline tail hotline.deadletter" in line for line in lines)
    assert any(line.startswith("/metrics of sla: http://127.0.0.1:3/metrics") and "/healthz" in line for line in lines)


def test_demo_results_go_to_stdout_and_progress_to_stderr(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import services.demo.runner as runner
    from services.cli import app

    def fake(n_events: int, seed: int, keep: bool, console, out) -> int:  # type: ignore[no-untyped-def]
        console.print("progress")
        out.print("result table")
        return 0

    monkeypatch.setattr(runner, "run_demo", fake)
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0
    assert "result table" in result.stdout and "progress" not in result.stdout
    assert "progress" in result.stderr


def test_input_rounds_wait_only_where_a_ticket_changes_hands() -> None:
    """The demo publishes a round and waits for the pipeline before the next: a round ends before an input of a
    ticket that a return or a ruling in it moved (that input answers the re-dispatch), and nowhere else."""
    from services.demo.runner import input_rounds

    def line(ticket: str, hour: int, action: str = "acknowledge") -> bytes:
        return json.dumps({"ticket_id": ticket, "action": action,
                           "occurred_at": f"2025-06-09T{hour:02d}:00:00+08:00"}).encode()

    updates = [line("A", 8, "return"), line("B", 9), line("A", 11), line("B", 12, "resolve"), line("C", 14)]
    rulings = [line("C", 10, "dispatch")]
    rounds = input_rounds(updates, rulings)
    assert [[(topic, json.loads(raw)["ticket_id"]) for topic, raw in r] for r in rounds] == [
        [("updates", "A"), ("updates", "B"), ("rulings", "C")],
        [("updates", "A"), ("updates", "B"), ("updates", "C")],  # C's ruling was processed with the first round
    ]
    assert input_rounds([line("D", 9, "return"), line("D", 10, "return"), line("D", 11)], []) == [
        [("updates", line("D", 9, "return"))], [("updates", line("D", 10, "return"))], [("updates", line("D", 11))]]
