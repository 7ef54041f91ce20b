"""What every Faust worker shares: the app, the database pool, effectively-once processing, the outbox relay,
dead-lettering of anything unexpected, and ``/metrics``.

An agent stays thin: ``Runtime.consume`` hands it batches of Kafka events, and for each input it loads state,
calls the domain and returns the messages to publish. A batch runs in one database transaction that records
each input's key (topic/partition/offset) and the outbox rows; the rows are published after commit, and only
then is the batch acknowledged to Kafka. An input that raises is redone alone and ends as a dead letter.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import asyncpg
import faust
from faust.types import TP
from aiohttp import web as aioweb
from aiokafka.errors import KafkaError

from services.domain.deadletters import dead_letter
from services.domain.privacy import well_formed
from services.domain.validation import Rejection, dated_after_sending
from services.platform import db, desk_signature
from services.platform.batch import Batch, IfNew
from services.platform.codec import Outgoing, encode, headers_from_json, headers_json
from services.platform.db import write_outbox
from services.platform.kafka_admin import partition_counts
from services.platform.kafka_security import faust_credentials
from services.platform.logging import get_logger
from services.platform.metrics import Metrics
from services.platform.settings import Settings
from services.platform.topics import names

log = get_logger(__name__)
FAIL_STOP_STATUS = 70  # EX_SOFTWARE: the worker stopped itself without acknowledging its inputs (Runtime.complete)
STOP_WAIT_SECONDS = 30.0  # longest a stopping worker waits for its batch in hand (Kubernetes grace period: 45 s)
HOLD_RETRY_SECONDS = 1.0  # how often held inputs are tried again (Runtime.retry_held)
HOLD_RETRY_BATCH = 200  # held inputs tried per round, oldest first (those whose ticket exists, or expired)
PARTITIONS_SECONDS = 300.0  # how long the partition counts of the ticket-opening topics are taken as known
MARK_SECONDS = 0.5  # how often published outbox rows are marked (well under the relay's 10 s minimum age)
Handler = Callable[[Batch], Awaitable[Sequence[Outgoing | IfNew]]]
MessageHandler = Callable[[Batch, bytes, Any], Awaitable[Sequence[Outgoing | IfNew]]]
Prefetch = Callable[[Batch, list[bytes]], Awaitable[None]]
# Every reason a worker can dead-letter an input with: the domain's Rejection reasons (docs/rejections.md, less the
# replay-only after_until) and internal_error. Each worker exports them as 0 for its stage from the start, so that
# the first dead letter of a reason is an increase the alerts see (tests/unit/test_worker_metrics.py keeps this
# list equal to the documented one).
DEAD_LETTER_REASONS = (
    "empty", "too_large", "invalid_utf8", "invalid_json", "not_an_object", "too_deep", "control_characters",
    "missing_field", "unknown_field", "unknown_source", "unknown_jurisdiction", "bad_timestamp", "future_timestamp",
    "wrong_type", "too_long", "empty_field", "unsupported_version", "invalid_value", "id_conflict", "unknown_ticket", "unit_mismatch",
    "before_dispatch", "out_of_order", "invalid_transition", "extension_after_due", "extension_not_later",
    "extension_pending", "no_extension_request",
    "not_in_triage", "not_the_desk", "desk_signature", "unit_signature", "unknown_rule", "no_lead", "unknown_unit", "internal_error",
)


def _limit_fetch_wait(ms: int) -> None:
    """Faust builds its worker consumer with ``fetch_max_wait_ms=1500``. A broker that holds a fetch until that
    long when no data is there (Tansu does) then adds up to 1.5 s per hop. Set our own wait on the consumer Faust
    creates, before it starts; this process runs one Faust app, so patching the class here is contained."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original = getattr(AIOKafkaConsumerThread, "_hotline_original_create", None) or \
        AIOKafkaConsumerThread._create_worker_consumer

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = ms
        return consumer

    AIOKafkaConsumerThread._hotline_original_create = original  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create  # type: ignore[method-assign]


def make_app(service: str, settings: Settings, port: int) -> faust.App:
    _limit_fetch_wait(settings.fetch_wait_ms)
    return faust.App(
        f"hotline-{service}",
        broker=f"kafka://{settings.kafka_bootstrap.replace(',', ';kafka://')}",
        broker_credentials=faust_credentials(settings),  # TLS / SASL (HOTLINE_KAFKA_SECURITY_PROTOCOL)
        store="memory://",
        topic_partitions=settings.partitions,
        topic_allow_declare=False,  # topics are provisioned by `hotline topics create`
        topic_disable_leader=True,
        web_enabled=True,
        web_bind=settings.web_host,  # the address the worker listens on (web_host alone only names its URL)
        web_host=settings.web_host,
        web_port=port,
        web_in_thread=False,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        stream_wait_empty=False,
    )


class Runtime:
    def __init__(self, service: str, app: faust.App, settings: Settings, metrics: Metrics) -> None:
        self.service = service
        self.app = app
        self.settings = settings
        self.metrics = metrics
        metrics.declare_dead_letters(service, DEAD_LETTER_REASONS)
        self.topics = names(settings.topic_prefix)
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._published: list[int] = []
        self._lag_topics: set[str] = set()  # topics whose hotline_consumer_lag_messages this worker has set
        # the handler of each input topic whose inputs may be held (``hold``), to try them again (``retry_held``),
        # and the table of the service's tickets (an input whose ticket exists may apply now)
        self.held_handlers: dict[str, MessageHandler] = {}
        self.held_tickets_table = "tickets"
        # the topics that open the service's tickets: a held input is dead-lettered only once the service has read
        # them past where they ended when it was held (``_EXPIRED``), however long a catch-up takes
        self.hold_waits_for: tuple[str, ...] = ()
        self._partitions: tuple[float, dict[str, int]] | None = None  # (when asked, partition count per topic)
        self._held_count = 0  # held inputs of the service, as last counted, plus those held since (hold_max)
        self.stop_wait_seconds = STOP_WAIT_SECONDS
        app.timer(MARK_SECONDS)(self.mark_published)
        app.timer(HOLD_RETRY_SECONDS)(self.retry_held)
        app.timer(settings.relay_seconds)(self.relay)
        app.timer(10.0)(self.report_lag)
        app.timer(3600.0)(self.prune)

        @app.page("/metrics")
        async def metrics_view(view: Any, request: Any) -> Any:
            return aioweb.Response(body=self.metrics.render(), content_type="text/plain", charset="utf-8")

        @app.page("/healthz")
        async def health_view(view: Any, request: Any) -> Any:
            return view.json({"service": self.service, "ok": True})

    async def pool(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await db.with_retry(
                    lambda: db.create_pool(self.settings.database_url, self.settings.db_pool_size), "connect database")
            return self._pool

    async def prune(self) -> None:
        try:
            keys, rows = await db.prune(await self.pool(), self.service, self.settings.dedup_retention_days)
        except db.RETRYABLE as exc:
            log.warning("prune_skipped", error=type(exc).__name__)
            return
        if keys or rows:
            log.info("pruned", processed_inputs=keys, outbox=rows)

    async def report_lag(self) -> None:
        """hotline_consumer_lag_messages: messages on this worker's partitions not yet fetched and processed. A topic
        this worker reported before and no longer has a partition of (a rebalance moved them, or it has none) is set
        to 0: its lag is now another replica's, and ``sum by (service, topic)`` must not count it twice."""
        consumer = self.app.consumer
        partitions = consumer.assignment()
        assigned = {tp.topic for tp in partitions}
        for topic in sorted(self._lag_topics - assigned):
            self.metrics.consumer_lag.labels(self.service, topic).set(0)
        if not partitions:
            return
        try:
            highs = await consumer.highwaters(*partitions)
            lag: dict[str, int] = {}
            for tp in partitions:
                position = await consumer.position(tp)
                if position is not None and tp in highs:
                    lag[tp.topic] = lag.get(tp.topic, 0) + max(highs[tp] - position, 0)
        except Exception as exc:  # lag is best effort; the broker may be rebalancing
            log.debug("lag_unavailable", error=type(exc).__name__)
            return
        for topic, value in lag.items():
            self.metrics.consumer_lag.labels(self.service, topic).set(value)
        self._lag_topics |= set(lag)

    @staticmethod
    def input_key(service: str, message: Any) -> str:
        return f"{service}:{message.topic}:{message.partition}:{message.offset}"

    async def consume(self, stream: faust.StreamT, handle: MessageHandler,
                      after: Callable[[Any], Callable[[], None] | None] | None = None,
                      prefetch: Prefetch | None = None) -> None:
        """The agent loop: batches of up to ``batch_max`` events (waiting at most ``batch_wait_seconds``), each
        batch processed in one database transaction, then published, then acknowledged to Kafka. ``prefetch``
        may load the state the batch's new inputs need in one query before the handlers run."""
        async for batch in stream.take_events(self.settings.batch_max, within=self.settings.batch_wait_seconds):
            await self.complete(self.process_batch(batch, handle, after, prefetch))

    async def complete(self, work: Awaitable[None]) -> None:
        """Run the processing of inputs Faust has handed to an agent to its end. Faust acknowledges the inputs of
        a batch as soon as the agent stops iterating, however it stops, and commits their offsets when the worker
        stops; so a stop (SIGTERM, a rolling deploy) waits for the batch's transaction and publish instead of
        cancelling them, and an exception that nothing below could record (every input's failure ends as a dead
        letter, so this is the database or the broker failing in a way no retry mends, or a bug) ends the process
        at once without acknowledging: the inputs are redelivered to the next worker, and none is lost. A batch
        still unfinished ``stop_wait_seconds`` after the stop (the database is down) ends the process the same
        way, before the orchestrator's kill."""
        task = asyncio.ensure_future(work)
        loop = asyncio.get_running_loop()
        stop_by: float | None = None  # once the worker is told to stop: how long the batch may still take
        while not task.done():
            try:
                if stop_by is None:
                    await asyncio.shield(task)
                else:
                    await asyncio.wait([task], timeout=max(stop_by - loop.time(), 0.0))
                    if not task.done():  # e.g. the database is down: stop now, still without acknowledging
                        break
            except asyncio.CancelledError:
                if task.cancelled():
                    break
                if stop_by is None:
                    log.info("stopping_after_batch", service=self.service)
                    stop_by = loop.time() + self.stop_wait_seconds
            except Exception:  # the task is done; its exception is handled below
                break
        if not task.done():
            self.fail_stop(TimeoutError(f"the batch in hand did not finish within {self.stop_wait_seconds:g} s of "
                                        "the stop"))
        if task.cancelled():
            self.fail_stop(asyncio.CancelledError("the processing of a batch was cancelled"))
        if task.exception() is not None:
            self.fail_stop(task.exception())  # type: ignore[arg-type]
        if stop_by is not None:
            raise asyncio.CancelledError

    def fail_stop(self, exc: BaseException) -> NoReturn:
        """End the process now, so that Faust neither acknowledges nor commits the inputs in hand."""
        log.critical("stopping_without_acknowledging", service=self.service, error=type(exc).__name__,
                     exc_info=exc)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(FAIL_STOP_STATUS)

    async def process_batch(self, batch: list[faust.EventT], handle: MessageHandler,
                            after: Callable[[Any], Callable[[], None] | None] | None = None,
                            prefetch: Prefetch | None = None) -> None:
        started = time.perf_counter()
        self.metrics.batch_inputs.labels(self.service).observe(len(batch))
        items = []
        raws = []
        for event in batch:
            raw = event.value if isinstance(event.value, bytes) else b""
            raws.append(raw)
            items.append((self.input_key(self.service, event.message),
                          lambda b, raw=raw, m=event.message: handle(b, raw, m)))
        positions = [_position(event.message) for event in batch]

        async def load(b: Batch, places: list[int]) -> None:
            if prefetch is not None:
                await prefetch(b, [raws[i] for i in places])

        pool = await self.pool()
        try:
            rows = await db.with_retry(lambda: db.run_batch(pool, self.service, items, load, positions),
                                     "process batch")
        except Exception as exc:  # one input of the batch is poison: redo one by one, dead-lettering only it
            log.warning("batch_failed_retrying_one_by_one", size=len(batch), error=type(exc).__name__)
            for event, (_, handler) in zip(batch, items, strict=True):
                await self.process(event, handler, after(event.message) if after else None)
            return
        if rows and not await self.publish(rows):
            after = None  # the relay publishes them later: the time to publish is not the latency to measure
        if after is not None:
            for event in batch:
                callback = after(event.message)
                if callback is not None:
                    callback()
        elapsed = (time.perf_counter() - started) / len(batch)
        for _ in batch:
            self.metrics.processing.labels(self.service).observe(elapsed)

    async def process(self, event: faust.EventT, handler: Handler,
                      on_published: Callable[[], None] | None = None) -> None:
        """Process one Kafka event effectively once: a failure of its handler ends in a dead letter. What raises
        from here (the dead letter itself cannot be written) is for ``complete`` to stop on."""
        key = self.input_key(self.service, event.message)
        position = _position(event.message)
        started = time.perf_counter()
        pool = await self.pool()
        try:
            rows = await db.with_retry(lambda: db.run_once(pool, self.service, key, handler, position),
                                       f"process {key}")
        except Exception as exc:  # a bug or a poison message: record it, keep the worker running
            log.exception("processing_failed", input=key, error=type(exc).__name__)
            failed = self._failed(event, exc)
            rows = await db.with_retry(lambda: db.run_once(pool, self.service, key + ":failed", failed, position),
                                       f"dead-letter {key}")
        if rows and await self.publish(rows) and on_published is not None:
            on_published()
        self.metrics.processing.labels(self.service).observe(time.perf_counter() - started)

    def _failed(self, event: faust.EventT, exc: Exception) -> Handler:
        async def handler(batch: Batch) -> list[Outgoing]:
            m = event.message
            rejection = Rejection("internal_error", None, f"{type(exc).__name__} while processing: {exc}"[:500])
            raw = event.value if isinstance(event.value, bytes) else bytes(str(event.value), "utf-8")
            return [await self.dead_letter(batch, self.service, rejection, raw, m.topic, m.partition, m.offset)]
        return handler

    async def hold(self, batch: Batch, ticket_id: str, rejection: Rejection, raw: bytes,
                   message: Any) -> list[Outgoing]:
        """Keep an input that names what this worker has not seen yet (a ticket, a re-dispatch) instead of
        dead-lettering it at once: Kafka orders one partition of one topic, not two topics, and a relayed message
        arrives late. ``retry_held`` runs it through its handler again until it applies; once expired
        (``HOTLINE_HOLD_SECONDS`` passed and the service has read the ticket-opening topics past where they ended
        when it was held: ``_EXPIRED``) its handler's ``hold`` dead-letters it with ``rejection``. The input counts as
        processed: its key is committed with the held row. With ``HOTLINE_HOLD_MAX`` inputs held already, it is
        dead-lettered at once (a flood of ids that will never come must not grow the table without end)."""
        retry = batch.scratch.get(_RETRY)
        if retry is not None:  # the handler ran again from retry_held
            if retry.final:
                return await self.reject(batch, rejection, raw, message)
            retry.still_held = True
            return []
        if self._held_count >= self.settings.hold_max:
            log.warning("hold_full_dead_lettered", service=self.service, held=self._held_count, reason=rejection.reason)
            return await self.reject(batch, rejection, raw, message)
        batch.scratch.setdefault(_HELD, {})[ticket_id] = True
        self._held_count += 1
        batch.write(
            """INSERT INTO held_inputs (service, input_key, ticket_id, topic, partition, "offset", headers, raw, reason,
               field, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING""",
            (self.service, self.input_key(self.service, message), ticket_id, message.topic, message.partition,
             message.offset, headers_json(message.headers or ()), raw, rejection.reason,
             rejection.field, well_formed(rejection.error)))
        log.info("input_held", service=self.service, reason=rejection.reason, topic=message.topic,
                 partition=message.partition, offset=message.offset)
        return []

    async def held_before(self, batch: Batch, ticket_id: str, raw: bytes, message: Any) -> list[Outgoing] | None:
        """An input of a ticket that has inputs held waits behind them (held too, ``[]``), so that the ticket's
        inputs apply in the order they came, as in the replay: an acknowledgement held for its work order must
        not be overtaken by the resolution that follows it. None: nothing of the ticket is held, go on.
        ``retry_held`` keeps the order itself."""
        if _RETRY in batch.scratch:
            return None
        known: dict[str, bool] = batch.scratch.setdefault(_HELD, {})
        if ticket_id not in known:  # the first question of the batch: ask about all its tickets in one query
            tickets = sorted({ticket_id, *batch.keys(self.held_tickets_table)} - known.keys())  # those prefetched
            held = {r["ticket_id"] for r in await batch.conn.fetch(
                "SELECT DISTINCT ticket_id FROM held_inputs WHERE service = $1 AND ticket_id = ANY($2::text[])",
                self.service, tickets)}
            known.update((t, t in held) for t in tickets)
        if not known[ticket_id]:
            return None
        behind = Rejection(HELD_BEHIND, "ticket_id", f"waits behind an earlier held input of ticket {ticket_id!r}")
        return await self.hold(batch, ticket_id, behind, raw, message)

    async def retry_held(self) -> int:
        """Try again the held inputs that can move — their ticket exists now, or they have waited too long —
        oldest first, each in its own transaction; a ticket's inputs stop at the first that is still held (the
        rest stay behind it, in order). Returns how many are held."""
        if not self.held_handlers:
            return 0
        try:
            pool = await self.pool()
            await self._note_waits(pool)
            rows = await pool.fetch(
                f"""SELECT h.input_key, h.ticket_id FROM held_inputs h
                    WHERE h.service = $1 AND ({_EXPIRED}
                          OR EXISTS (SELECT 1 FROM {self.held_tickets_table} t WHERE t.ticket_id = h.ticket_id))
                    ORDER BY h.held_at, h.topic, h.partition, h."offset" LIMIT $2""",
                self.service, HOLD_RETRY_BATCH, self.settings.hold_seconds)
            blocked: set[str] = set()
            for row in rows:
                if row["ticket_id"] in blocked:
                    continue
                try:
                    done = await self._retry_one(pool, row["input_key"])
                except db.RETRYABLE:
                    raise
                except Exception as exc:  # its dead letter cannot be written: it stays, the others go on
                    log.exception("retry_held_failed", input=row["input_key"], error=type(exc).__name__)
                    done = False
                if not done:
                    blocked.add(row["ticket_id"])
            left = int(await pool.fetchval("SELECT count(*) FROM held_inputs WHERE service = $1", self.service))
        except db.RETRYABLE as exc:
            log.warning("retry_held_deferred", error=type(exc).__name__)
            return -1
        self._held_count = left
        self.metrics.held_inputs.labels(self.service).set(left)
        return left

    async def _note_waits(self, pool: asyncpg.Pool) -> None:
        """Note in the inputs held since the last round (``waits_for``) where the ticket-opening topics end now,
        read after the inputs were found held (committed). While the broker cannot say, they are not noted, and
        do not expire."""
        keys = [r["input_key"] for r in await pool.fetch(
            "SELECT input_key FROM held_inputs WHERE service = $1 AND waits_for IS NULL", self.service)]
        if not keys:
            return
        try:
            ends = await self.topic_ends(self.hold_waits_for)
        except Exception as exc:
            log.warning("hold_watermark_unavailable", service=self.service, error=type(exc).__name__)
            return
        await pool.execute(  # rows another replica is retrying (locked) are noted in a later round
            """UPDATE held_inputs SET waits_for = $3::jsonb WHERE service = $1 AND input_key IN (
                   SELECT input_key FROM held_inputs WHERE service = $1 AND input_key = ANY($2::text[])
                   AND waits_for IS NULL FOR UPDATE SKIP LOCKED)""",
            self.service, keys, ends)

    async def topic_ends(self, topics: Sequence[str]) -> dict[str, int]:
        """``{"topic/partition": offset}``: the offset after the last message of every partition of ``topics``
        (their partition counts from the cluster's metadata, asked at most every PARTITIONS_SECONDS)."""
        if not topics:
            return {}
        loop = asyncio.get_running_loop()
        if self._partitions is None or loop.time() - self._partitions[0] > PARTITIONS_SECONDS:
            counts = await partition_counts(self.settings, list(topics))
            if set(counts) != set(topics):
                raise LookupError(f"the broker does not know {sorted(set(topics) - set(counts))}")
            self._partitions = (loop.time(), counts)
        counts = self._partitions[1]
        tps = [TP(t, p) for t in topics for p in range(counts[t])]
        # bounded: a consumer not started yet would never answer
        ends = await asyncio.wait_for(self.app.consumer.highwaters(*tps), 10.0)
        return {f"{tp.topic}/{tp.partition}": int(offset) for tp, offset in ends.items()}

    async def _retry_one(self, pool: asyncpg.Pool, key: str) -> bool:
        """Run one held input through its handler again; returns whether it is done (applied or dead-lettered)."""
        async def attempt(final: bool) -> tuple[bool, list[tuple[int, Outgoing]]]:
            async with pool.acquire() as conn:
                async with conn.transaction():
                    row = await conn.fetchrow(
                        f"""SELECT h.topic, h.partition, h."offset", h.headers, h.raw, {_EXPIRED} AS expired
                            FROM held_inputs h WHERE h.service = $1 AND h.input_key = $2 FOR UPDATE SKIP LOCKED""",
                        self.service, key, self.settings.hold_seconds)
                    if row is None:  # done by another replica meanwhile, or it holds the row now
                        return False, []
                    message = HeldMessage(row["topic"], row["partition"], row["offset"],
                                          headers_from_json(row["headers"]))
                    raw = bytes(row["raw"])
                    batch = Batch(conn)
                    retry = _Retry(final=final or row["expired"])
                    batch.scratch[_RETRY] = retry
                    handler = self.held_handlers.get(message.topic)
                    if final or handler is None:
                        why = "its handler failed" if handler else f"no handler reads {message.topic} any more"
                        out = await self.reject(batch, Rejection("internal_error", None, f"held input: {why}"), raw,
                                                message)
                    else:  # applied, held again, or (expired) dead-lettered by the handler's own ``hold``
                        out = list(await handler(batch, raw, message))
                    if retry.still_held:
                        return False, []
                    await conn.execute("DELETE FROM held_inputs WHERE service = $1 AND input_key = $2", self.service,
                                       key)
                    rows = await write_outbox(conn, self.service, await batch.flush(out))
                batch.committed()  # metric updates of what is done (none of a round that leaves it held)
                return True, rows

        try:
            done, rows = await attempt(final=False)
        except db.RETRYABLE:
            raise
        except Exception as exc:  # its handler fails: an internal error, as in process(), not retried forever
            log.exception("held_input_failed", input=key, error=type(exc).__name__)
            done, rows = await attempt(final=True)
        if rows:
            await self.publish(rows)
        return done

    def dated_after_sending(self, occurred_at: datetime, message: Any) -> Rejection | None:
        """An input dated more than ``HOTLINE_CLOCK_SKEW_SECONDS`` after its Kafka record was sent
        (``future_timestamp``); see ``validation.dated_after_sending``."""
        return dated_after_sending(occurred_at, sent_at(message), timedelta(seconds=self.settings.clock_skew_seconds))

    def desk_signed(self, raw: bytes, message: Any, what: str) -> Rejection | None:
        """A message of the dispatch desk without its valid signature (``desk_signature``), when
        ``HOTLINE_DESK_SIGNING_KEYS`` is set; see ``desk_signature``. Judged each time the input is tried, a held
        one (``HeldMessage``, which keeps every header) included, with the keys of that moment: what was held before
        the keys were set is not let through unchecked, and a key removed since no longer signs."""
        return desk_signature.check(self.settings.desk_keys, raw, getattr(message, "headers", None), what)

    def warn_if_desk_unsigned(self) -> None:
        """For the workers that read the desk's messages: say at start that they are taken on trust."""
        if not self.settings.desk_keys:
            log.warning("desk_messages_unauthenticated", service=self.service,
                        detail="HOTLINE_DESK_SIGNING_KEYS is empty: rulings, callbacks, reviews of extensions and "
                               "reopenings are accepted from whoever writes the dispatch desk's name")

    async def reject(self, batch: Batch, rejection: Rejection, raw: bytes, message: Any) -> list[Outgoing]:
        """Dead-letter the input ``message`` (its topic, partition and offset) for this service's stage."""
        return [await self.dead_letter(batch, self.service, rejection, raw, message.topic, message.partition,
                                       message.offset)]

    async def dead_letter(self, batch: Batch, stage: str, rejection: Rejection, raw: bytes,
                          topic: str | None, partition: int | None, offset: int | None) -> Outgoing:
        record = dead_letter(stage, rejection, raw, datetime.now(UTC), topic=topic, partition=partition, offset=offset)
        batch.write(
            """INSERT INTO dead_letters (dead_letter_id, stage, reason, field, error, original, original_encoding,
               original_size, topic, partition, "offset", received_at)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) ON CONFLICT DO NOTHING""",
            (record.dead_letter_id, record.stage, record.reason, record.field, record.error, record.original,
             record.original_encoding, record.original_size, record.topic, record.partition, record.offset,
             record.received_at))
        batch.count(self.metrics.rejected.labels(stage, rejection.reason).inc)
        log.info("dead_letter", stage=stage, reason=rejection.reason, field=rejection.field, topic=topic,
                 partition=partition, offset=offset)
        return self.out(record, "deadletter", record.dead_letter_id, ce_id=record.dead_letter_id, subject=None,
                        time=record.received_at)

    def out(self, model: Any, topic: str, key: str | None, *, ce_id: str, subject: str | None,
            time: datetime, extra_headers: tuple[tuple[str, bytes], ...] = (), body: bytes | None = None) -> Outgoing:
        name = self.topics.get(topic, topic)
        msg = encode(model, topic=name, key=key, ce_id=ce_id, source=f"/hotline/{self.service}", subject=subject,
                     time=time, body=body)
        return Outgoing(msg.topic, msg.key, msg.value, msg.headers + extra_headers) if extra_headers else msg

    async def publish(self, rows: list[tuple[int, Outgoing]]) -> bool:
        """Send committed outbox rows, retrying while the broker is unreachable. An error no retry mends (a
        message the broker refuses) leaves the rows to the relay, which sends them again (``hotline_outbox_pending``;
        ``HotlineOutboxBacklog`` alerts when they pile up); returns whether they went."""
        async def send() -> None:
            producer = self.app.producer
            try:
                futures = [await producer.send(m.topic, m.key.encode() if m.key else None, m.value, None, None,
                                               list(m.headers)) for _, m in rows]
                await asyncio.gather(*futures)
            except KafkaError as exc:
                if exc.retriable:
                    raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc  # db.with_retry retries it
                raise

        try:
            await db.with_retry(send, "publish")
        except KafkaError as exc:
            log.error("publish_failed_left_to_relay", service=self.service, rows=len(rows), error=type(exc).__name__)
            return False
        self._published.extend(i for i, _ in rows)  # marked in the outbox by ``mark_published``, off this path
        return True

    async def mark_published(self) -> None:
        """Mark what was published in the outbox, a batch of ids per call (every ``MARK_SECONDS``), so the
        agents do not wait for that commit. Ids not marked yet (a crash in between) are re-sent by the relay of
        a restarted worker: a repeat that every consumer recognises by its ``ce_id``."""
        if not self._published:
            return
        ids, self._published = self._published, []
        try:
            await db.mark_published(await self.pool(), ids)
        except db.RETRYABLE as exc:
            self._published.extend(ids)
            log.warning("mark_published_deferred", rows=len(ids), error=type(exc).__name__)

    async def relay(self) -> None:
        """Publish outbox rows a crashed or interrupted worker left behind."""
        try:
            pool = await self.pool()
            rows = await db.unpublished(pool, self.service, older_than_seconds=max(self.settings.relay_seconds * 2, 10))
        except db.RETRYABLE as exc:
            log.warning("relay_skipped", error=type(exc).__name__)
            return
        self.metrics.outbox_pending.labels(self.service).set(len(rows))
        if rows:
            log.info("relay_publishing", rows=len(rows))
            await self.publish(rows)


def sent_at(message: Any) -> datetime | None:
    """When an input was sent: its Kafka record's timestamp (the producer's clock, or the broker's where the topic
    sets ``message.timestamp.type=LogAppendTime``). None where there is none: a held input tried again
    (``HeldMessage``), a record without a timestamp (-1) or with one out of range."""
    seconds = getattr(message, "timestamp", None)
    try:
        return datetime.fromtimestamp(seconds, UTC) if seconds is not None and seconds > 0 else None
    except (ValueError, OverflowError, OSError):  # out of range (microseconds sent as milliseconds): unknown
        return None


def _position(message: Any) -> db.Position:
    return message.topic, message.partition, message.offset


# Whether the held input ``h`` is dead-lettered now ($3: HOTLINE_HOLD_SECONDS): it has waited that long, and its
# service has read every partition of the ticket-opening topics up to where it ended when the input was held
# (``waits_for``, noted by ``_note_waits``; migration 005), and no earlier input of its ticket is still held (a
# ticket's inputs expire in the order they came, like they apply). A partition the service has no progress of yet
# does not hold it back.
_EXPIRED = """(h.held_at < now() - make_interval(secs => $3) AND h.waits_for IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM jsonb_each_text(h.waits_for) AS w(part, end_offset)
    JOIN input_progress p ON p.service = h.service AND p.topic = split_part(w.part, '/', 1)
                         AND p.partition = split_part(w.part, '/', 2)::integer
    WHERE p.next_offset < w.end_offset::bigint) AND NOT EXISTS (
    SELECT 1 FROM held_inputs o WHERE o.service = h.service AND o.ticket_id = h.ticket_id
    AND (o.held_at, o.topic, o.partition, o."offset") < (h.held_at, h.topic, h.partition, h."offset")))"""
_RETRY = "hotline.retry_held"  # Batch.scratch key: the held input being tried again
_HELD = "hotline.held_tickets"  # Batch.scratch key: {ticket: has held inputs}, asked once per batch
HELD_BEHIND = "held_behind"  # held_inputs.reason of an input waiting behind an earlier held one of its ticket


@dataclass
class _Retry:
    final: bool  # held for longer than HOTLINE_HOLD_SECONDS: ``hold`` dead-letters it now
    still_held: bool = False


@dataclass(frozen=True)
class HeldMessage:
    """Where a held input came from, as its handler reads it from a Kafka message."""

    topic: str
    partition: int
    offset: int
    headers: tuple[tuple[str, bytes | None], ...]

