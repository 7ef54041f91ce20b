"""A broker or database that cannot be reached is one line naming it and the variable to set, exit status 1, no
traceback (like an invalid setting, which is exit status 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli import masked_dsn
from services.platform.embedded import free_port
from tests.conftest import REPO

DATABASE = "HOTLINE_DATABASE_URL: cannot connect to PostgreSQL at postgresql://hotline:***@127.0.0.1:{port}/hotline"
KAFKA = "HOTLINE_KAFKA_BOOTSTRAP: cannot reach Kafka at 127.0.0.1:{port}"


@pytest.mark.parametrize(("command", "expected"), [
    (["db", "migrate"], DATABASE),
    (["report", "--out", "report"], DATABASE),
    (["topics", "create"], KAFKA),
    (["http"], KAFKA),
    (["tail", "hotline.deadletter", "--max", "1"], KAFKA),
])
def test_an_unreachable_service_is_one_line(command: list[str], expected: str, tmp_path: Path) -> None:
    port = free_port()  # bound and released: nothing listens there
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "300",
           "HOTLINE_DATABASE_URL": f"postgresql://hotline:s3cret@127.0.0.1:{port}/hotline",
           "HOTLINE_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}
    result = subprocess.run([sys.executable, "-m", "services.cli", *command], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("connection error " + expected.format(port=port)), lines[0]
    assert "Traceback" not in result.stderr and "s3cret" not in result.stderr


def test_masked_dsn_hides_the_password() -> None:
    assert masked_dsn("postgresql://hotline:secret@db:5432/hotline?sslmode=verify-full") == \
        "postgresql://hotline:***@db:5432/hotline?sslmode=verify-full"
    assert masked_dsn("postgresql://postgres@127.0.0.1:5432/hotline") == "postgresql://postgres@127.0.0.1:5432/hotline"
    assert masked_dsn("postgresql://u@h/db?password=secret&sslmode=require") == \
        "postgresql://u@h/db?password=***&sslmode=require"
    assert masked_dsn("postgresql://postgres:@/postgres?host=/tmp/x") == "postgresql://postgres:@/postgres?host=/tmp/x"
