"""The intake worker: raw events in, accepted events or dead letters out."""

from __future__ import annotations

import time

import asyncpg
import faust

from services.domain.intake import accept_event
from services.domain.repeats import OpenReport, RepeatPolicy, find_repeat, repeat_report
from services.domain.validation import Rejection
from services.platform.codec import RECEIVED_HEADER, Outgoing
from services.platform.metrics import Metrics
from services.platform.settings import Settings
from services.platform.worker import Runtime, make_app


def build(settings: Settings, metrics: Metrics | None = None, policy: RepeatPolicy | None = None) -> faust.App:
    policy = policy or RepeatPolicy.load()
    app = make_app("intake", settings, settings.intake_port)
    rt = Runtime("intake", app, settings, metrics or Metrics())
    raw_topic = app.topic(rt.topics["raw"], value_type=bytes, value_serializer="raw", key_serializer="raw")

    async def handle(conn: asyncpg.Connection, raw: bytes, m: faust.types.Message) -> list[Outgoing]:
        rt.metrics.received_bytes.inc(len(raw))
        parsed = accept_event(raw)
        if isinstance(parsed, Rejection):
            return await rt.reject(conn, parsed, raw, m)
        if await conn.fetchval("SELECT true FROM intake_events WHERE event_id = $1", parsed.event_id):
            rt.metrics.duplicates.labels("intake").inc()
            return []
        key = policy.address_key(parsed.address)
        rows = await conn.fetch(
            """SELECT ticket_id, occurred_at, content FROM intake_events
               WHERE jurisdiction = $1 AND address_key = $2 AND NOT merged AND occurred_at BETWEEN $3 AND $4""",
            parsed.jurisdiction.value, key, parsed.occurred_at - policy.window, parsed.occurred_at + policy.window)
        found = find_repeat(parsed, [OpenReport(r["ticket_id"], r["occurred_at"], r["content"]) for r in rows], policy)
        ticket_id = found[0].ticket_id if found else parsed.event_id
        fresh = await conn.fetchval(
            """INSERT INTO intake_events (event_id, ticket_id, jurisdiction, source, occurred_at, address_key, content,
               merged, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING true""",
            parsed.event_id, ticket_id, parsed.jurisdiction.value, parsed.source.value, parsed.occurred_at, key,
            parsed.content, found is not None, parsed.model_dump_json(exclude={"caller"}))
        if not fresh:
            rt.metrics.duplicates.labels("intake").inc()
            return []
        rt.metrics.received.labels(parsed.source.value, parsed.jurisdiction.value).inc()
        received = ((RECEIVED_HEADER, str(int((m.timestamp or time.time()) * 1000)).encode()),)
        if found is not None:
            rt.metrics.merged.labels(parsed.jurisdiction.value).inc()
            report = repeat_report(parsed, ticket_id, found[1])
            return [rt.out(report, "accepted", ticket_id, ce_id=parsed.event_id, subject=ticket_id,
                           time=parsed.occurred_at, extra_headers=received)]
        return [rt.out(parsed, "accepted", parsed.event_id, ce_id=parsed.event_id, subject=parsed.event_id,
                       time=parsed.occurred_at, extra_headers=received)]

    @app.agent(raw_topic, name="intake")
    async def intake(stream: faust.StreamT) -> None:
        await rt.consume(stream, handle)

    app.hotline_runtime = rt  # type: ignore[attr-defined]
    return app
