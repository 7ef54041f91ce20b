"""The HTTP entry for systems that cannot write to Kafka: our own ``POST /v1/events`` and Open311 GeoReport v2.

Accepted requests are published to the raw topic exactly as a Kafka producer would (key = jurisdiction, CloudEvents
headers), so intake validates them again, recognises repeats and dead-letters what it cannot use: there is one
path into the pipeline. Status queries read PostgreSQL (``tickets``, then ``intake_events``).

Nothing connects at import time: :func:`build_app` takes its publisher and pool, :func:`serve` creates them.
Logs carry event ids, reason codes and field names only: never API keys, caller data or report text.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from schemas import IntakeEvent
from services.domain.intake import accept_event, same_report
from services.domain.validation import MAX_EVENT_BYTES, Rejection, dated_after_sending
from services.intake import open311
from services.platform.codec import TYPES
from services.platform.logging import get_logger
from services.platform.metrics import LATENCY_BUCKETS
from services.platform.settings import Settings
from services.platform.topics import names

log = get_logger(__name__)

Publish = Callable[[bytes, str], Awaitable[None]]

CE_SOURCE = "/hotline/http"
CE_TYPE = TYPES[IntakeEvent]
PUBLISH_TIMEOUT_SECONDS = 30.0
MAX_IDEMPOTENCY_KEY_CHARS = 255
PUBLIC_PATHS = frozenset({"/metrics"})

# typed storage keys where this aiohttp has them (AppKey ≥ 3.9, RequestKey ≥ 3.13), plain strings before
_AppKey: Any = getattr(web, "AppKey", None)
_RequestKey: Any = getattr(web, "RequestKey", None)
METRICS: Any = _AppKey("hotline_http_metrics", object) if _AppKey else "hotline_http_metrics"
_API_KEY: Any = _RequestKey("hotline_api_key", str) if _RequestKey else "hotline_api_key"
_PARAMS: Any = _RequestKey("hotline_params", object) if _RequestKey else "hotline_params"


class HttpMetrics:
    """Counters of the HTTP entry; labels are endpoint names, status codes and reason codes only."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("hotline_http_requests", "HTTP requests by endpoint and response status",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("hotline_http_request_seconds", "Time to answer an HTTP request", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.published = Counter("hotline_http_published", "Events published to the raw topic", ["endpoint"],
                                 registry=r)
        self.rejected = Counter("hotline_http_rejected", "Requests refused before publishing (400)",
                                ["endpoint", "reason"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


# --------------------------------------------------------------------------- publishing


def ce_headers(event_id: str, now: datetime) -> list[tuple[str, bytes]]:
    """The CloudEvents Kafka-binding headers of a raw event published by this entry."""
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id.encode()),
        ("ce_source", CE_SOURCE.encode()),
        ("ce_type", CE_TYPE.encode()),
        ("ce_time", now.isoformat().encode()),
        ("ce_subject", event_id.encode()),
        ("content-type", b"application/json"),
    ]


def kafka_publisher(producer: Any, topic: str) -> Publish:
    """A ``publish(value, event_id)`` on a started AIOKafkaProducer (acks="all"). The key is the event's
    jurisdiction, as the README asks of every producer: reports about one place are then judged for repeat
    merge (并单) in arrival order. Only validated events are published, so the jurisdiction is there."""

    async def publish(value: bytes, event_id: str) -> None:
        jurisdiction = str(json.loads(value).get("jurisdiction", ""))
        await producer.send_and_wait(topic, value, key=jurisdiction.encode() or event_id.encode(),
                                     headers=ce_headers(event_id, datetime.now(UTC)))

    return publish


class _Unavailable(Exception):
    pass


# --------------------------------------------------------------------------- responses


def _is_open311(request: web.Request) -> bool:
    return not request.path.startswith("/v1/")


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False))


def _error(request: web.Request, status: int, error: str, message: str, field: str | None = None) -> web.Response:
    """Open311 paths answer ``[{"code", "description"}]``; /v1 paths ``{"error", "field", "message"}``."""
    if _is_open311(request):
        return _json(open311.error_body(status, message), status)
    return _json({"error": error, "field": field, "message": message}, status)


_HTTP_ERRORS = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    413: "too_large", 415: "unsupported_media_type",
}


# --------------------------------------------------------------------------- middlewares


def _endpoint(request: web.Request) -> str:
    route = request.match_info.route
    return getattr(route, "name", None) or "unmatched"


@web.middleware
async def _observe(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
    """Metrics for every request; aiohttp's own errors (404, 405, 413, ...) and crashes as JSON errors."""
    metrics: HttpMetrics = request.app[METRICS]
    endpoint = _endpoint(request)
    started = time.perf_counter()
    status = 500
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            reason = _HTTP_ERRORS.get(exc.status, "http_error")
            message = {413: f"the body exceeds {MAX_EVENT_BYTES} bytes"}.get(exc.status, exc.reason)
            response = _error(request, exc.status, reason, message)
        except _Unavailable:
            response = _error(request, 503, "unavailable", "the service cannot accept requests right now; retry")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the client gets a 500, the log only the exception type
            log.error("http_internal_error", endpoint=endpoint, error=type(exc).__name__)
            response = _error(request, 500, "internal_error", "internal error")
        status = response.status
        return response
    finally:
        metrics.requests.labels(endpoint, str(status)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)


def _auth_middleware(keys: frozenset[str]) -> Any:
    @web.middleware
    async def authenticate(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        key = request.headers.get("X-API-Key") or request.query.get("api_key")
        if not key and request.method == "POST" and _is_open311(request):
            params = await _params(request)
            if not isinstance(params, open311.Open311Error):
                value = params.get("api_key")
                key = value if isinstance(value, str) else None
        if not key:
            return _error(request, 401, "unauthorized",
                          "an API key is required: header X-API-Key or parameter api_key")
        # compare with every key, in constant time each: which key matched is not observable
        matched = False
        for known in keys:
            matched |= hmac.compare_digest(key.encode(), known.encode())
        if not matched:
            return _error(request, 403, "forbidden", "the API key is not valid")
        request[_API_KEY] = key
        return await handler(request)

    return authenticate


# --------------------------------------------------------------------------- request parameters


async def _params(request: web.Request) -> dict[str, Any] | open311.Open311Error:
    """Open311 POST parameters: the query string, overridden by a form (urlencoded or multipart) or JSON body.
    Parsed once per request; file parts (media) are skipped."""
    if _PARAMS in request:
        return request[_PARAMS]  # type: ignore[no-any-return]
    params: dict[str, Any] | open311.Open311Error = dict(request.query)
    ctype = request.content_type
    if ctype == "application/json":
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except (ValueError, RecursionError):
            body = None
        if isinstance(body, dict):
            params = {**params, **body}
        else:
            params = open311.Open311Error(400, None, "the body is not a JSON object")
    elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = await request.post()
        except (ValueError, UnicodeDecodeError, AssertionError):  # a malformed form body
            form = None
        if form is None:
            params = open311.Open311Error(400, None, "the body is not a valid form")
        else:
            for name in form:
                value = form.getone(name)
                if isinstance(value, str):
                    params[name] = value  # type: ignore[index]
    request[_PARAMS] = params
    return params


def _canonical(params: Mapping[str, Any]) -> bytes:
    """The request body for the event-id hash, independent of the encoding the client chose."""
    return json.dumps({k: v for k, v in params.items() if k != "api_key"}, sort_keys=True, default=str).encode()


# --------------------------------------------------------------------------- the app


def build_app(settings: Settings, *, publish: Publish, pool: asyncpg.Pool, categories: list[dict[str, Any]],
              registry: CollectorRegistry | None = None) -> web.Application:
    """The aiohttp application. ``publish(value, event_id)`` puts bytes on the raw topic; ``pool`` reads status;
    ``categories`` are the entries of categories.yaml (:func:`services.intake.open311.load_categories`)."""
    keys = frozenset(k.strip() for k in settings.http_api_keys.split(",") if k.strip())
    metrics = HttpMetrics(registry)
    services = open311.service_list(categories)
    category_names = open311.category_names(categories)
    codes = frozenset(category_names)
    skew = timedelta(seconds=settings.clock_skew_seconds)

    async def send(request: web.Request, raw: bytes, event_id: str) -> None:
        try:
            await asyncio.wait_for(publish(raw, event_id), timeout=PUBLISH_TIMEOUT_SECONDS)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - broker unreachable or timed out: the client may retry
            log.warning("http_publish_failed", event_id=event_id, error=type(exc).__name__)
            raise _Unavailable from exc
        metrics.published.labels(_endpoint(request)).inc()
        log.info("http_event_published", event_id=event_id, endpoint=_endpoint(request))

    def rejected(request: web.Request, reason: str, field: str | None) -> None:
        metrics.rejected.labels(_endpoint(request), reason).inc()
        log.info("http_request_rejected", endpoint=_endpoint(request), reason=reason, field=field)

    async def post_event(request: web.Request) -> web.Response:
        raw = await request.read()
        parsed = accept_event(raw)
        if not isinstance(parsed, Rejection):  # as intake would dead-letter it: received now, it was sent now
            parsed = dated_after_sending(parsed.occurred_at, datetime.now(UTC), skew) or parsed
        if isinstance(parsed, Rejection):
            rejected(request, parsed.reason, parsed.field)
            return _json({"error": parsed.reason, "field": parsed.field, "message": parsed.error}, 400)
        await send(request, raw, parsed.event_id)
        return _json({"event_id": parsed.event_id, "status_url": _status_url(parsed.event_id)}, 202)

    async def get_services(request: web.Request) -> web.Response:
        return _json(services)

    async def post_request(request: web.Request) -> web.Response:
        params = await _params(request)
        if isinstance(params, open311.Open311Error):
            rejected(request, "bad_body", params.field)
            return _json(params.body(), params.code)
        idempotency_key = request.headers.get("Idempotency-Key")
        if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_CHARS:
            rejected(request, "bad_idempotency_key", "Idempotency-Key")
            return _json(open311.error_body(
                400, f"Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"), 400)
        now = datetime.now(UTC)
        event_id = open311.request_event_id(request[_API_KEY], idempotency_key, _canonical(params), now)
        event = open311.form_to_event(params, event_id=event_id, now=now, service_codes=codes)
        if isinstance(event, open311.Open311Error):
            rejected(request, "invalid_parameter", event.field)
            return _json(event.body(), event.code)
        try:
            raw = json.dumps(event, ensure_ascii=False).encode()
        except UnicodeEncodeError:  # lone surrogates from a JSON body
            rejected(request, "invalid_utf8", None)
            return _json(open311.error_body(400, "the request holds text that is not valid Unicode"), 400)
        parsed = accept_event(raw)
        if isinstance(parsed, Rejection):
            error = open311.from_rejection(parsed)
            rejected(request, parsed.reason, error.field)
            return _json(error.body(), error.code)
        if idempotency_key is not None and await reused_for_another_report(parsed):
            rejected(request, "id_conflict", "Idempotency-Key")
            return _json(open311.error_body(409, "Idempotency-Key: already used for a different report; use a "
                                                 "fresh key for each report"), 409)
        await send(request, raw, event_id)
        notice = f"已受理 (accepted), being routed to the responsible unit; status: GET {_status_url(event_id)}"
        return _json([{"service_request_id": event_id, "service_notice": notice, "account_id": None}], 201)

    async def reused_for_another_report(event: IntakeEvent) -> bool:
        """The key's request id is taken by a report intake has accepted, and this is not that report (a retry has
        its fingerprint). A reuse that intake has not stored yet is caught there, as an ``id_conflict`` dead letter."""
        try:
            async with pool.acquire() as conn:
                payload = await conn.fetchval("SELECT payload FROM intake_events WHERE event_id = $1", event.event_id)
            if payload is None:
                return False
            stored = json.loads(payload) if isinstance(payload, str) else payload
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError, ValueError) as exc:
            # the check is a courtesy: without it the report is published, and intake still catches a reuse
            log.warning("http_idempotency_check_skipped", error=type(exc).__name__)
            return False
        return not same_report(stored, event)  # as intake decides it

    async def lookup(ids: list[str]) -> list[dict[str, Any]]:
        try:
            async with pool.acquire() as conn:
                intakes = {r["event_id"]: _row(r) for r in await conn.fetch(
                    """SELECT event_id, ticket_id, jurisdiction, occurred_at, content, payload, received_at
                       FROM intake_events WHERE event_id = ANY($1::text[])""", ids)}
                wanted = sorted({*ids, *(r["ticket_id"] for r in intakes.values())})
                tickets = {r["ticket_id"]: _row(r) for r in await conn.fetch(
                    """SELECT ticket_id, status, category, unit, opened_at, state, updated_at
                       FROM tickets WHERE ticket_id = ANY($1::text[])""", wanted)}
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError) as exc:
            log.warning("http_lookup_failed", error=type(exc).__name__)
            raise _Unavailable from exc
        found = []
        for service_request_id in ids:
            intake = intakes.get(service_request_id)
            ticket = tickets.get(intake["ticket_id"] if intake else service_request_id)
            item = open311.service_request(service_request_id, intake, ticket, category_names)
            if item is not None:
                found.append(item)
        return found

    async def get_request(request: web.Request) -> web.Response:
        found = await lookup([request.match_info["id"]])
        if not found:
            return _json(open311.error_body(404, "service_request_id: not found"), 404)
        return _json(found)

    async def get_requests(request: web.Request) -> web.Response:
        ids = open311.parse_ids(request.query.get("service_request_id"))
        if isinstance(ids, open311.Open311Error):
            return _json(ids.body(), ids.code)
        return _json(await lookup(ids))

    async def get_metrics(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=MAX_EVENT_BYTES, middlewares=[_observe, _auth_middleware(keys)])
    app[METRICS] = metrics
    app.router.add_post("/v1/events", post_event, name="events")
    app.router.add_get("/services.json", get_services, name="services")
    app.router.add_post("/requests.json", post_request, name="requests_post")
    app.router.add_get("/requests.json", get_requests, name="requests_get")
    app.router.add_get(r"/requests/{id:[A-Za-z0-9._:\-]+}.json", get_request, name="request_get")
    app.router.add_get("/metrics", get_metrics, name="metrics")
    return app


def _status_url(event_id: str) -> str:
    return f"/requests/{quote(event_id, safe=':')}.json"


def _row(record: Mapping[str, Any]) -> dict[str, Any]:
    """A row as a dict, jsonb decoded even on a pool without the json codec."""
    row = dict(record)
    for name in ("payload", "state"):
        if isinstance(row.get(name), str):
            row[name] = json.loads(row[name])
    return row


async def serve(settings: Settings) -> None:
    """Run the HTTP entry on ``web_host:http_port`` until cancelled: a Kafka producer on the raw topic, a
    PostgreSQL pool for status queries."""
    from aiokafka import AIOKafkaProducer

    from services.platform.db import create_pool
    from services.platform.kafka_security import client_options

    if not settings.http_api_keys.strip():
        log.warning("http_no_api_keys", detail="HOTLINE_HTTP_API_KEYS is empty: every request will be refused")
    topic = names(settings.topic_prefix)["raw"]
    producer = AIOKafkaProducer(**client_options(settings), acks="all", linger_ms=5)
    await producer.start()
    try:
        pool = await create_pool(settings.database_url, settings.db_pool_size)
        try:
            app = build_app(settings, publish=kafka_publisher(producer, topic), pool=pool,
                            categories=open311.load_categories())
            runner = web.AppRunner(app, access_log=None)  # the access log would show api_key query parameters
            await runner.setup()
            try:
                await web.TCPSite(runner, settings.web_host, settings.http_port).start()
                log.info("http_listening", host=settings.web_host, port=settings.http_port, topic=topic)
                await asyncio.Event().wait()
            finally:
                await runner.cleanup()
        finally:
            await pool.close()
    finally:
        await producer.stop()
