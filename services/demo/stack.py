"""Bringing up the embedded stack with topics, schema and the three workers (used by the demo and the tests)."""

from __future__ import annotations

import asyncio
import secrets
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from services.domain.dispatch import Routes
from services.platform.db import migrate
from services.platform.embedded import EmbeddedStack, wait_for_port
from services.platform.kafka_admin import all_specs, create_topics
from services.platform.settings import Settings
from services.platform.unit_signature import write_new_keys_file

SERVICES = ("intake", "router", "sla")


@dataclass
class Running:
    stack: EmbeddedStack
    settings: Settings
    dsn: str
    env: dict[str, str]

    def metrics_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.stack.ports[service]}/metrics"

    def metrics(self, service: str) -> str:
        with urllib.request.urlopen(self.metrics_url(service), timeout=5) as response:
            return response.read().decode()

    def stop(self) -> None:
        self.stack.stop()


def start(root: Path, router: Routes, *, sla_clock: str = "ticks", partitions: int = 4,
          services: tuple[str, ...] = SERVICES, reset_db: bool = True) -> Running:
    """Start broker and database, provision topics, migrate, start the workers, wait for their /metrics."""
    stack = EmbeddedStack(root)
    try:
        bootstrap = stack.start_broker()
        dsn = stack.start_database()
        if reset_db:
            asyncio.run(_reset(dsn))
        # the desk's and the units' messages are signed here as in production (the feeder signs them)
        desk_key = secrets.token_hex(32)
        all_units = router.all_units()  # type: ignore[attr-defined]
        unit_keys = _unit_keys_file(root, {code: (j, name) for j, code, name in all_units})
        settings = Settings(kafka_bootstrap=bootstrap, database_url=dsn, partitions=partitions, sla_clock=sla_clock,
                            sla_sweep_seconds=1.0, relay_seconds=2.0, desk_signing_keys=desk_key,
                            unit_keys_file=str(unit_keys))
        units = [(code, name) for _, code, name in all_units]
        asyncio.run(create_topics(settings, all_specs(settings, units)))
        asyncio.run(migrate(dsn))
        env = stack.worker_env(dsn, HOTLINE_SLA_CLOCK=sla_clock, HOTLINE_PARTITIONS=str(partitions),
                               HOTLINE_SLA_SWEEP_SECONDS="1", HOTLINE_RELAY_SECONDS="2",
                               HOTLINE_SCORECARD_SECONDS="2", HOTLINE_DESK_SIGNING_KEYS=desk_key,
                               HOTLINE_UNIT_KEYS_FILE=str(unit_keys))
        for service in services:
            stack.start_worker(service, env)
        for service in services:
            wait_for_port(stack.ports[service], timeout=90)
        return Running(stack, settings, dsn, env)
    except BaseException:
        stack.stop()
        raise


def _unit_keys_file(root: Path, units: dict[str, tuple[str, str]]) -> Path:
    """A new keys file for every unit (``hotline unit-keys``), readable by its owner only."""
    path = root / "unit-keys.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    write_new_keys_file(path, units)
    return path


async def _reset(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()
