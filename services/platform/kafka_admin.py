"""Provisioning topics with explicit partition counts (idempotent: existing topics are left as they are)."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.platform.kafka_security import client_options
from services.platform.settings import Settings
from services.platform.topics import TopicSpec, pipeline_topics, unit_topic


@dataclass(frozen=True)
class TopicResult:
    name: str
    partitions: int
    status: str  # created | exists | exists-with-N-partitions


def all_specs(settings: Settings, unit_codes: list[tuple[str, str]]) -> list[TopicSpec]:
    specs = pipeline_topics(settings)
    for code, name in unit_codes:
        specs.append(TopicSpec(unit_topic(settings.topic_prefix, code), settings.unit_topic_partitions, "ticket_id",
                               f"WorkOrder copies and RepeatReports for {name}", "router", name))
    return specs


async def create_topics(settings: Settings, specs: list[TopicSpec]) -> list[TopicResult]:
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=30000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        results: dict[str, TopicResult] = {}
        for i in range(0, len(missing), 50):
            batch = missing[i:i + 50]
            response = await admin.create_topics(
                [NewTopic(s.name, s.partitions, settings.replication_factor) for s in batch])
            for name, code, message in _errors(response):
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (a concurrent run)
                    raise RuntimeError(f"creating topic {name} failed: error {code} {message}")
            for s in batch:
                results[s.name] = TopicResult(s.name, s.partitions, "created")
        present = [s for s in specs if s.name in existing]
        if present:
            described = await admin.describe_topics([s.name for s in present])
            counts = {d["topic"]: len(d["partitions"]) for d in described}
            for s in present:
                n = counts.get(s.name, 0)
                status = "exists" if n == s.partitions else f"exists-with-{n}-partitions"
                results[s.name] = TopicResult(s.name, n, status)
        return [results[s.name] for s in specs]
    finally:
        await admin.close()


async def partition_counts(settings: Settings, topics: list[str]) -> dict[str, int]:
    """How many partitions each of ``topics`` has, from the cluster's metadata (topics it does not know: absent)."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=10000)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
        return {d["topic"]: len(d["partitions"]) for d in described if d.get("error_code", 0) == 0 and d["partitions"]}
    finally:
        await admin.close()


def _errors(response: object) -> list[tuple[str, int, str | None]]:
    out = []
    for item in getattr(response, "topic_errors", []):
        name, code = item[0], item[1]
        message = item[2] if len(item) > 2 else None
        out.append((name, code, message))
    return out
