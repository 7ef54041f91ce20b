"""PostgreSQL through asyncpg: the pool, versioned migrations, and the effectively-once unit of work."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any

import asyncpg

from services.platform.batch import Batch, IfNew
from services.platform.codec import Outgoing, headers_from_json, headers_json
from services.platform.logging import get_logger

log = get_logger(__name__)
MIGRATION_LOCK = 7_345_012_345
RETRYABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
             asyncpg.InterfaceError, asyncpg.exceptions.AdminShutdownError, asyncpg.exceptions.DeadlockDetectedError,
             ConnectionError, asyncio.TimeoutError)


def _encode_json(value: Any) -> str:
    """jsonb parameters: text that is already JSON (``model_dump_json()``, serialised in Rust) goes as it is."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=_encode_json, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, size: int = 4) -> asyncpg.Pool:
    """The workers' pool. Statements are planned for their actual parameters every time
    (``plan_cache_mode=force_custom_plan``): asyncpg prepares every statement, and PostgreSQL's generic plan for
    ``WHERE ticket_id = ANY($1)`` chosen while a table was still small was a sequential scan, kept as the table
    grew, so each batch scanned more rows than the last."""
    return await asyncpg.create_pool(dsn, min_size=1, max_size=size, init=_init, command_timeout=30,
                                     server_settings={"plan_cache_mode": "force_custom_plan"})


def migrations() -> list[tuple[int, str, str]]:
    files = sorted(p for p in resources.files("services.platform.migrations").iterdir() if p.name.endswith(".sql"))
    return [(int(p.name.split("_", 1)[0]), p.name, p.read_text(encoding="utf-8")) for p in files]


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations in order, each in its own transaction; safe to run concurrently."""
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        await conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
            version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())""")
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            applied.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        await conn.close()
    return applied


Work = Callable[[Batch], Awaitable[Sequence[Outgoing | IfNew]]]
Position = tuple[str, int, int]  # an input's topic, partition and offset
PROGRESS_UPSERT = """
    INSERT INTO input_progress (service, topic, partition, next_offset)
    SELECT $1, t, p, o FROM unnest($2::text[], $3::int[], $4::bigint[]) AS x(t, p, o) ORDER BY t, p
    ON CONFLICT (service, topic, partition)
    DO UPDATE SET next_offset = GREATEST(input_progress.next_offset, EXCLUDED.next_offset)"""


async def record_progress(conn: asyncpg.Connection, service: str, positions: Sequence[Position]) -> None:
    """Move ``input_progress`` past ``positions`` (in the transaction that processed them): how far the service
    has read each partition, whichever replica read it, for the expiry of held inputs (migration 005)."""
    ends: dict[tuple[str, int], int] = {}
    for topic, partition, offset in positions:
        ends[(topic, partition)] = max(ends.get((topic, partition), 0), offset + 1)
    if ends:
        keys = sorted(ends)
        await conn.execute(PROGRESS_UPSERT, service, [t for t, _ in keys], [p for _, p in keys],
                           [ends[k] for k in keys])


async def run_once(pool: asyncpg.Pool, service: str, input_key: str, work: Work,
                   position: Position | None = None) -> list[tuple[int, Outgoing]] | None:
    """Run ``work`` for an input exactly once: in one transaction with the input's key and its outbox rows (and
    the progress past its ``position``).

    Returns the outbox rows to publish, or None when this input was processed before (a redelivery:
    whatever it produced is already in the outbox and the relay publishes what is still pending)."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            fresh = await conn.fetchval(
                "INSERT INTO processed_inputs (input_key) VALUES ($1) ON CONFLICT DO NOTHING RETURNING true",
                input_key)
            if position is not None:
                await record_progress(conn, service, [position])
            if not fresh:
                return None
            batch = Batch(conn)
            out = await batch.flush(await work(batch))
            rows = await write_outbox(conn, service, out)
        batch.committed()
        return rows


Prefetch = Callable[[Batch, list[int]], Awaitable[None]]


async def run_batch(pool: asyncpg.Pool, service: str, items: list[tuple[str, Work]],
                    prefetch: Prefetch | None = None,
                    positions: Sequence[Position] = ()) -> list[tuple[int, Outgoing]]:
    """``run_once`` for a batch of inputs in one transaction and a few statements: the input keys are recorded
    in one insert (inputs seen before are skipped), ``prefetch`` may load the state of the fresh inputs (their
    places in ``items``) in one query, the handlers run on a shared ``Batch``, and its writes and outbox rows
    go out at the end, with the progress past the inputs' ``positions``. If any handler raises, nothing of the
    batch is committed."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            rows = await conn.fetch(
                """INSERT INTO processed_inputs (input_key) SELECT unnest($1::text[])
                   ON CONFLICT DO NOTHING RETURNING input_key""", [key for key, _ in items])
            await record_progress(conn, service, positions)
            fresh = {r["input_key"] for r in rows}
            batch = Batch(conn)
            places = [i for i, (key, _) in enumerate(items) if key in fresh]
            if prefetch is not None and places:
                await prefetch(batch, places)
            out: list[Outgoing | IfNew] = []
            for i in places:
                out.extend(await items[i][1](batch))
            published = await write_outbox(conn, service, await batch.flush(out))
        batch.committed()
        return published


async def write_outbox(conn: asyncpg.Connection, service: str, out: list[Outgoing]) -> list[tuple[int, Outgoing]]:
    if not out:
        return []
    ids = await conn.fetch(
        """INSERT INTO outbox (service, topic, key, value, headers)
           SELECT $1, t, k, v, h::jsonb FROM unnest($2::text[], $3::text[], $4::bytea[], $5::text[]) AS x(t, k, v, h)
           RETURNING id""",
        service, [m.topic for m in out], [m.key for m in out], [m.value for m in out],
        [headers_json(m.headers) for m in out])
    return list(zip(sorted(r["id"] for r in ids), out, strict=True))


async def mark_published(pool: asyncpg.Pool, ids: list[int]) -> None:
    """Mark outbox rows published. Losing this commit in a crash only means the relay sends the rows again, so
    it does not wait for the WAL flush (``synchronous_commit`` off for this transaction)."""
    if ids:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit TO OFF")
            await conn.execute("UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", ids)


async def unpublished(pool: asyncpg.Pool, service: str, older_than_seconds: float,
                      limit: int = 1000) -> list[tuple[int, Outgoing]]:
    rows = await pool.fetch(
        """SELECT id, topic, key, value, headers FROM outbox
           WHERE service = $1 AND published_at IS NULL AND created_at < now() - make_interval(secs => $2)
           ORDER BY id LIMIT $3""", service, older_than_seconds, limit)
    return [(r["id"], Outgoing(r["topic"], r["key"], bytes(r["value"]),
                               headers_from_json(r["headers"]))) for r in rows]


async def prune(pool: asyncpg.Pool, service: str, older_than_days: float) -> tuple[int, int]:
    """Forget processed-input keys and published outbox rows older than the retention (Kafka will not redeliver
    them any more); returns how many rows went."""
    keys = await pool.execute(
        "DELETE FROM processed_inputs WHERE input_key LIKE $1 AND processed_at < now() - make_interval(days => $2)",
        f"{service}:%", older_than_days)
    rows = await pool.execute(
        """DELETE FROM outbox WHERE service = $1 AND published_at IS NOT NULL
           AND published_at < now() - make_interval(days => $2)""", service, older_than_days)
    return int(keys.split()[-1]), int(rows.split()[-1])


async def with_retry(action: Callable[[], Awaitable[Any]], what: str, *, max_delay: float = 10.0) -> Any:
    """Retry an action while the database or broker is unreachable; never drop the message in hand."""
    delay = 0.2
    while True:
        try:
            return await action()
        except RETRYABLE as exc:
            if isinstance(exc, ValueError):  # asyncpg's DataError: a value that cannot be sent; a retry cannot mend it
                raise
            log.warning("retrying", what=what, error=type(exc).__name__, delay_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
