"""The intake worker: raw events in, accepted events or dead letters out."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import faust

from schemas import IntakeEvent
from services.domain.intake import accept_event, id_conflict, same_report
from services.domain.repeats import OpenReport, RepeatPolicy, find_repeat, repeat_report
from services.domain.validation import Rejection
from services.platform.batch import Batch
from services.platform.codec import RECEIVED_HEADER, Outgoing
from services.platform.metrics import Metrics
from services.platform.settings import Settings
from services.platform.worker import Runtime, make_app


def build(settings: Settings, metrics: Metrics | None = None, policy: RepeatPolicy | None = None) -> faust.App:
    policy = policy or RepeatPolicy.load()
    app = make_app("intake", settings, settings.intake_port)
    rt = Runtime("intake", app, settings, metrics or Metrics())
    raw_topic = app.topic(rt.topics["raw"], value_type=bytes, value_serializer="raw", key_serializer="raw")

    async def prefetch(batch: Batch, raws: list[bytes]) -> None:
        """Validate the batch's inputs, then load in two queries which of their ids are known and the open
        reports at their addresses (the repeat candidates); reports accepted earlier in the batch join these."""
        parsed = {id(raw): accept_event(raw) for raw in raws}
        events = [e for e in parsed.values() if not isinstance(e, Rejection)]
        batch.scratch["parsed"] = parsed
        known = await batch.conn.fetch("SELECT event_id, payload FROM intake_events WHERE event_id = ANY($1::text[])",
                                       [e.event_id for e in events])
        batch.scratch["known"] = {r["event_id"]: r["payload"] for r in known}  # read only if the id comes again
        windows: dict[tuple[str, str], tuple[datetime, datetime]] = {}
        for e in events:
            where = (e.jurisdiction.value, policy.address_key(e.address))
            lo, hi = windows.get(where, (e.occurred_at, e.occurred_at))
            windows[where] = (min(lo, e.occurred_at), max(hi, e.occurred_at))
        open_reports: dict[tuple[str, str], list[OpenReport]] = {where: [] for where in windows}
        if windows:
            rows = await batch.conn.fetch(
                """SELECT i.jurisdiction, i.address_key, i.ticket_id, i.occurred_at, i.content,
                          i.payload -> 'iot' ->> 'device_id' AS device FROM intake_events i
                   JOIN unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[]) AS q(j, k, lo, hi)
                     ON i.jurisdiction = q.j AND i.address_key = q.k AND i.occurred_at BETWEEN q.lo AND q.hi
                   WHERE NOT i.merged""",
                [j for j, _ in windows], [k for _, k in windows], [lo - policy.window for lo, _ in windows.values()],
                [hi + policy.window for _, hi in windows.values()])
            for r in rows:
                open_reports[(r["jurisdiction"], r["address_key"])].append(
                    OpenReport(r["ticket_id"], r["occurred_at"], r["content"], r["device"]))
        batch.scratch["open"] = open_reports

    async def handle(batch: Batch, raw: bytes, m: faust.types.Message) -> list[Outgoing]:
        batch.count(lambda: rt.metrics.received_bytes.inc(len(raw)))
        parsed = batch.scratch["parsed"].get(id(raw)) if "parsed" in batch.scratch else None
        if parsed is None:  # not prefetched (an input redone on its own): look everything up for it alone
            await prefetch(batch, [raw])
            parsed = batch.scratch["parsed"][id(raw)]
        if not isinstance(parsed, Rejection):
            parsed = rt.dated_after_sending(parsed.occurred_at, m) or parsed
        if isinstance(parsed, Rejection):
            return await rt.reject(batch, parsed, raw, m)
        known: dict[str, IntakeEvent | dict[str, Any]] = batch.scratch["known"]  # the reports accepted under these ids
        seen = known.get(parsed.event_id)
        if seen is not None:  # compared only here, so an event seen for the first time costs no fingerprint
            if not same_report(seen, parsed):
                return await rt.reject(batch, id_conflict(parsed), raw, m)
            batch.count(rt.metrics.duplicates.labels("intake").inc)
            return []
        known[parsed.event_id] = parsed
        key = policy.address_key(parsed.address)
        candidates = batch.scratch["open"].setdefault((parsed.jurisdiction.value, key), [])
        found = find_repeat(parsed, candidates, policy)
        ticket_id = found[0].ticket_id if found else parsed.event_id
        batch.write(
            """INSERT INTO intake_events (event_id, ticket_id, jurisdiction, source, occurred_at, address_key, content,
               merged, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING""",
            (parsed.event_id, ticket_id, parsed.jurisdiction.value, parsed.source.value, parsed.occurred_at, key,
             parsed.content, found is not None, parsed.model_dump_json(exclude={"caller"})))
        batch.count(rt.metrics.received.labels(parsed.source.value, parsed.jurisdiction.value).inc)
        received = ((RECEIVED_HEADER, str(int((m.timestamp or time.time()) * 1000)).encode()),)
        if found is not None:
            batch.count(rt.metrics.merged.labels(parsed.jurisdiction.value).inc)
            report = repeat_report(parsed, ticket_id, found[1])
            return [rt.out(report, "accepted", ticket_id, ce_id=parsed.event_id, subject=ticket_id,
                           time=parsed.occurred_at, extra_headers=received)]
        candidates.append(OpenReport.of(parsed))
        return [rt.out(parsed, "accepted", parsed.event_id, ce_id=parsed.event_id, subject=parsed.event_id,
                       time=parsed.occurred_at, extra_headers=received)]

    @app.agent(raw_topic, name="intake")
    async def intake(stream: faust.StreamT) -> None:
        await rt.consume(stream, handle, prefetch=prefetch)

    app.hotline_runtime = rt  # type: ignore[attr-defined]
    return app
