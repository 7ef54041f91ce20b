from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from services.domain.clock import CHINA_TZ
from services.domain.sla import SlaRules

REPO = Path(__file__).resolve().parents[1]


def cst(text: str) -> datetime:
    """A China Standard Time instant from 'YYYY-MM-DD HH:MM'."""
    return datetime.fromisoformat(text).replace(tzinfo=CHINA_TZ)


@pytest.fixture(scope="session")
def rules() -> SlaRules:
    return SlaRules.load()


@pytest.fixture(scope="session")
def router():  # type: ignore[no-untyped-def]
    from services.domain.routing import Router

    return Router.load()


@pytest.fixture
def database(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A migrated embedded PostgreSQL (pgserver) for one test; yields its DSN."""
    import asyncio

    from services.platform.db import migrate
    from services.platform.embedded import EmbeddedStack

    stack = EmbeddedStack(tmp_path)
    try:
        dsn = stack.start_database()
        asyncio.run(migrate(dsn))
        yield dsn
    finally:
        stack.stop()
