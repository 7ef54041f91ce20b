"""`hotline tail` on the real embedded broker: one JSON line per message with its key, CloudEvents headers and
value; from the beginning or only new messages; an unknown topic is named."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer

from schemas import ClockTick
from services.platform.codec import encode
from services.platform.embedded import EmbeddedStack
from services.platform.kafka_admin import create_topics
from services.platform.kafka_security import client_options
from services.platform.settings import Settings
from services.platform.topics import TopicSpec
from tests.conftest import REPO

pytestmark = pytest.mark.integration
TOPIC = "hotline.tailtest"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):  # type: ignore[no-untyped-def]
    stack = EmbeddedStack(tmp_path_factory.mktemp("tail"))
    try:
        settings = Settings(kafka_bootstrap=stack.start_broker())
        asyncio.run(create_topics(settings, [TopicSpec(TOPIC, 2, "ticket_id", "test", "test", "test")]))
        asyncio.run(_send(settings, ["T-1", "T-2", "T-3"]))
        yield settings
    finally:
        stack.stop()


async def _send(settings: Settings, keys: list[str]) -> None:
    producer = AIOKafkaProducer(**client_options(settings))
    await producer.start()
    try:
        for key in keys:
            tick = ClockTick(now=datetime(2025, 5, 6, 1, 0, tzinfo=UTC))
            out = encode(tick, topic=TOPIC, key=key, ce_id=f"id-{key}", source="/test", subject=key,
                         time=tick.now)
            await producer.send_and_wait(out.topic, out.value, key=key.encode(), headers=list(out.headers))
    finally:
        await producer.stop()


def _tail(settings: Settings, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOTLINE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap}
    return subprocess.Popen([sys.executable, "-m", "services.cli", "tail", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_tail_from_the_beginning_prints_key_headers_and_value(broker: Settings) -> None:
    proc = _tail(broker, TOPIC, "--from-beginning", "--max", "3")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted(line["key"] for line in lines) == ["T-1", "T-2", "T-3"]
    for line in lines:
        assert line["topic"] == TOPIC and line["partition"] in (0, 1) and line["offset"] >= 0
        assert line["headers"]["ce_type"] == "cn.gov.12345.clock.tick.v1"
        assert line["headers"]["ce_subject"] == line["key"] and line["headers"]["content-type"] == "application/json"
        assert line["value"]["now"].startswith("2025-05-06T01:00:00")


def test_tail_without_from_beginning_prints_only_new_messages(broker: Settings) -> None:
    proc = _tail(broker, TOPIC, "--max", "1")
    try:
        deadline = time.monotonic() + 60
        n = 0
        while proc.poll() is None and time.monotonic() < deadline:  # it starts at the end: send until it sees one
            n += 1
            asyncio.run(_send(broker, [f"NEW-{n}"]))
            time.sleep(0.5)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    (line,) = [json.loads(x) for x in out.splitlines()]
    assert line["key"].startswith("NEW-")


def test_tail_names_an_unknown_topic(broker: Settings) -> None:
    proc = _tail(broker, "hotline.nosuchtopic", "--max", "1")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and out == ""
    assert "no topic hotline.nosuchtopic" in err and "Traceback" not in err
