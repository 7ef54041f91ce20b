"""`hotline evaluate-routing` finds its labelled set from any directory, not only the repository's."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app


def test_evaluate_routing_finds_its_set_from_another_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["evaluate-routing"])
    assert result.exit_code == 0, result.output
    assert "|" in result.stdout and "qingpu" in result.stdout
