from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from services.cli import app

EVENT = {"event_id": "QP-9", "source": "hotline_12345", "jurisdiction": "qingpu",
         "occurred_at": "2025-05-06T09:00:00+08:00", "content": "小区里有人私搭乱建彩钢板房，违法建筑",
         "address": "上海市青浦区朱家角镇新风路100号"}


def test_classify_prints_one_decision_per_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(EVENT, ensure_ascii=False) + "\n{broken\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["classify", "--input", str(path)])
    assert result.exit_code == 0, result.output
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert {"event_id", "jurisdiction", "category", "lead_unit", "cooperating_units", "territorial_unit", "confidence",
            "needs_triage", "citations", "explanation"} <= set(first)
    assert first["lead_unit"] == "区城管执法局" and first["territorial_unit"] == "朱家角镇"
    assert first["citations"][0]["file"].endswith(".txt") and first["citations"][0]["clause"]
    assert second["rejected"] is True and second["reason"] == "invalid_json"


def test_replay_command_writes_every_output(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(EVENT, ensure_ascii=False) + "\n\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["replay", "--events", str(events), "--out", str(tmp_path / "out"),
                                      "--until", "2025-06-30T00:00:00+08:00"])
    assert result.exit_code == 0, result.output
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"work_orders.jsonl", "escalations.jsonl", "rejects.jsonl", "campaigns.json", "summary.json"} <= names
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["read"], summary["accepted"], summary["rejected"], summary["dispatched"]) == (2, 1, 1, 1)


def test_replay_refuses_until_without_offset(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("", encoding="utf-8")
    result = CliRunner().invoke(app, ["replay", "--events", str(events), "--out", str(tmp_path / "o"),
                                      "--until", "2025-06-30T00:00:00"])
    assert result.exit_code != 0 and "offset" in result.output


def test_a_wrong_setting_is_named_without_a_traceback(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    for variable, value, expected in [
        ("HOTLINE_BATCH_MAX", "zero", "HOTLINE_BATCH_MAX: Input should be a valid integer"),
        ("HOTLINE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL", "HOTLINE_KAFKA_SASL_USERNAME and HOTLINE_KAFKA_SASL_PASSWORD "
                                                        "are required"),
    ]:
        result = subprocess.run([sys.executable, "-m", "services.cli", "topics", "list"], cwd=tmp_path,
                                env={**os.environ, "PYTHONPATH": str(REPO), variable: value, "COLUMNS": "300"},
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert "configuration error" in result.stderr and "Traceback" not in result.stderr
        assert expected in " ".join(result.stderr.split()), result.stderr


def test_unit_keys_writes_a_secret_file_the_sla_worker_loads_and_never_overwrites_one(tmp_path: Path) -> None:
    from services.domain.sla import SlaRules
    from services.platform.unit_signature import UnitKeys

    path = tmp_path / "unit-keys.yaml"
    result = CliRunner().invoke(app, ["unit-keys", str(path)])
    assert result.exit_code == 0, result.output
    assert path.stat().st_mode & 0o777 == 0o600
    units = SlaRules.load().units
    assert f"a key for each of {len(units)} units" in result.stdout
    assert UnitKeys.load(path, units).unlisted() == []
    before = path.read_bytes()
    again = CliRunner().invoke(app, ["unit-keys", str(path)])
    assert again.exit_code == 1 and "File exists" in again.output and path.read_bytes() == before
