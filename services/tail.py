"""``hotline tail``: print a topic's messages as JSON lines (key, CloudEvents headers, value), to look inside.

It reads every partition of the topic without a consumer group (it commits nothing and takes nothing away from
the workers), connects like every other client (``kafka_security.client_options``: TLS and SASL settings apply)
and prints one line per message to stdout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from services.platform.settings import Settings


class NoSuchTopic(Exception):
    """The broker does not know the topic."""


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", errors="replace")


def message_line(message: Any) -> dict[str, Any]:
    """One consumed message as a JSON-ready dict: where it is, its key, its headers (the CloudEvents attributes
    ``ce_*`` and ``content-type``) and its value (parsed when it is JSON, else the text)."""
    value: Any = _text(message.value)
    if value is not None:
        try:
            value = json.loads(value)
        except ValueError:
            pass
    return {
        "topic": message.topic, "partition": message.partition, "offset": message.offset,
        "timestamp": datetime.fromtimestamp(message.timestamp / 1000, UTC).isoformat(timespec="milliseconds"),
        "key": _text(message.key),
        "headers": {name: _text(data) for name, data in (message.headers or ())},
        "value": value,
    }


async def tail(settings: Settings, topic: str, *, from_beginning: bool, max_messages: int | None,
               write: Callable[[str], None]) -> int:
    """Print ``topic``'s messages (from the start, or only new ones) until ``max_messages`` have been printed
    (None: until cancelled). Returns how many were printed."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from services.platform.kafka_security import client_options

    consumer = AIOKafkaConsumer(**client_options(settings), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest" if from_beginning else "latest")
    try:
        await consumer.start()
        if topic not in await consumer.topics():
            raise NoSuchTopic(topic)
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        if from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        printed = 0
        while max_messages is None or printed < max_messages:
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            messages = sorted((m for ms in batch.values() for m in ms), key=lambda m: (m.timestamp, m.partition,
                                                                                         m.offset))
            for message in messages:
                if max_messages is not None and printed >= max_messages:
                    break
                write(json.dumps(message_line(message), ensure_ascii=False))
                printed += 1
        return printed
    finally:
        await consumer.stop()
