"""The unit of work of one batch of inputs: one transaction, a handful of statements per batch, not per input.

A worker's handlers run one after another on a ``Batch``. Reads of state go through the batch's identity map
(a ticket loaded or saved earlier in the batch is taken from there, so the second input on a ticket sees what
the first did), and whole batches can be prefetched with one query. Writes are queued per SQL statement and
sent at the end with ``executemany`` (asyncpg pipelines the rows in one round trip); a later write with the same
key replaces an earlier one, so a ticket touched by five inputs is upserted once. Escalations are inserted in
one statement that returns which ids are new, and only those are published: their id is the dedup key.

Every write is idempotent (deterministic ids, upserts, ``ON CONFLICT DO NOTHING``); the batch changes how many
round trips they take, not what they do. A handler that must run a statement at once uses ``batch.conn`` (the
transaction's connection); queued writes of the same batch are not visible to it yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg
from pydantic import BaseModel

from services.domain.privacy import well_formed
from services.domain.validation import parse_json
from services.platform.codec import Outgoing

ESCALATION_INSERT = """
    INSERT INTO escalations (escalation_id, kind, jurisdiction, ticket_id, campaign_id, unit, level, threshold, at,
                             payload)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[],
                         $8::float8[], $9::timestamptz[], $10::jsonb[])
    ON CONFLICT DO NOTHING RETURNING escalation_id"""


@dataclass(frozen=True)
class IfNew:
    """An outgoing message published only if its escalation row was new (its id was not there yet)."""

    escalation_id: str
    message: Outgoing
    on_new: Callable[[], None] | None = None


class Batch:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._writes: dict[str, dict[Hashable, tuple[Any, ...]]] = {}
        self._loaded: dict[tuple[str, str], Any] = {}
        self._current: dict[tuple[str, str], Any] = {}
        self._dirty: dict[str, dict[str, Any]] = {}
        self._flushers: dict[str, Callable[[Batch, dict[str, tuple[Any, Any]]], None]] = {}
        self._escalations: dict[str, tuple[Any, ...]] = {}
        self._seq = 0
        self._counts: list[Callable[[], None]] = []
        self.scratch: dict[str, Any] = {}  # a handler's own per-batch memo (e.g. inputs parsed by its prefetch)

    # --- writes ---------------------------------------------------------------------------------------------
    def write(self, sql: str, args: Sequence[Any], key: Hashable | None = None) -> None:
        """Queue one row for ``sql``; with ``key``, a later row with the same key replaces this one."""
        rows = self._writes.setdefault(sql, {})
        if key is None:
            self._seq += 1
            key = ("#", self._seq)
        rows.pop(key, None)  # a replacement goes last, keeping statement order per key
        rows[key] = tuple(args)

    def count(self, record: Callable[[], None]) -> None:
        """A metric update (a counter's ``inc``) that takes effect when the batch's transaction has committed
        (``committed``): a batch rolled back and retried, or redone one input at a time, counts its inputs once."""
        self._counts.append(record)

    def committed(self) -> None:
        """The transaction committed: apply the metric updates of ``count``."""
        counts, self._counts = self._counts, []
        for record in counts:
            record()

    def escalation(self, row: Sequence[Any]) -> None:
        """Queue an escalation row (the columns of ESCALATION_INSERT); the first with an id wins."""
        self._escalations.setdefault(row[0], tuple(row))

    # --- state: identity map and dirty tracking -------------------------------------------------------------
    def known(self, kind: str, key: str) -> bool:
        return (kind, key) in self._current

    def get(self, kind: str, key: str) -> Any:
        return self._current.get((kind, key))

    def keys(self, kind: str) -> set[str]:
        """The keys of ``kind`` this batch has read or written (prefetched ones included, found or not)."""
        return {key for k, key in self._current if k == kind}

    def loaded(self, kind: str, key: str, value: Any) -> None:
        """Record state as read from the database (``None``: no row)."""
        self._loaded[(kind, key)] = value
        self._current.setdefault((kind, key), value)

    def put(self, kind: str, key: str, value: Any, flush: Callable[[Batch, dict[str, tuple[Any, Any]]], None]) -> None:
        """New state for ``key``; ``flush(batch, {key: (as_loaded, latest)})`` turns the dirty states of ``kind``
        into queued writes when the batch ends."""
        self._current[(kind, key)] = value
        self._dirty.setdefault(kind, {})[key] = value
        self._flushers[kind] = flush

    async def prefetch(self, kind: str, keys: Sequence[str],
                       fetch: Callable[[asyncpg.Connection, list[str]], Awaitable[dict[str, Any]]]) -> None:
        """Load every state of ``keys`` not already known with one query (absent rows are remembered as None)."""
        wanted = sorted({k for k in keys if not self.known(kind, k)})
        if not wanted:
            return
        found = await fetch(self.conn, wanted)
        for key in wanted:
            self.loaded(kind, key, found.get(key))

    # --- the end of the batch -------------------------------------------------------------------------------
    async def flush(self, out: Sequence[Outgoing | IfNew]) -> list[Outgoing]:
        """Send every queued write; return the messages to publish (escalation messages only if new)."""
        for kind, states in self._dirty.items():
            self._flushers[kind](self, {k: (self._loaded.get((kind, k)), v) for k, v in states.items()})
        self._dirty.clear()
        for sql, rows in self._writes.items():
            if len(rows) == 1:
                await self.conn.execute(sql, *next(iter(rows.values())))
            elif rows:
                await self.conn.executemany(sql, list(rows.values()))
        self._writes.clear()
        new: set[str] = set()
        if self._escalations:
            columns = list(zip(*self._escalations.values(), strict=True))
            rows = await self.conn.fetch(ESCALATION_INSERT, *columns)
            new = {r["escalation_id"] for r in rows}
            self._escalations.clear()
        messages: list[Outgoing] = []
        for item in out:
            if isinstance(item, IfNew):
                if item.escalation_id in new:
                    new.discard(item.escalation_id)  # the same escalation queued twice is published once
                    if item.on_new is not None:
                        self.count(item.on_new)
                    messages.append(item.message)
            else:
                messages.append(item)
        return messages


M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class StateTable(Generic[M]):
    """A table of JSON states (``ticket_id`` primary key, ``state`` jsonb) read through a batch's identity map:
    rows are locked ``FOR UPDATE`` in id order, so two batches never wait on each other in a cycle."""

    table: str
    model: type[M]
    keys: tuple[str, ...]  # message fields naming the row, first present wins (for prefetching)

    async def _fetch(self, conn: asyncpg.Connection, ids: list[str]) -> dict[str, Any]:
        rows = await conn.fetch(
            f"SELECT ticket_id, state::text AS state FROM {self.table} WHERE ticket_id = ANY($1::text[]) "
            "ORDER BY ticket_id FOR UPDATE", ids)
        return {r["ticket_id"]: self.model.model_validate_json(r["state"]) for r in rows}

    async def prefetch(self, batch: Batch, raws: list[bytes]) -> None:
        """Load and lock the rows a batch of messages names, in one query."""
        keys = (json_key(raw, *self.keys) for raw in raws)
        await batch.prefetch(self.table, [k for k in keys if k is not None], self._fetch)

    async def load(self, batch: Batch, ticket_id: str) -> M | None:
        if not batch.known(self.table, ticket_id):
            await batch.prefetch(self.table, [ticket_id], self._fetch)
        return batch.get(self.table, ticket_id)  # type: ignore[no-any-return]

    def put(self, batch: Batch, ticket_id: str, state: M,
            flush: Callable[[Batch, dict[str, tuple[Any, Any]]], None]) -> None:
        batch.put(self.table, ticket_id, state, flush)

    def loaded(self, batch: Batch, ticket_id: str, state: M) -> None:
        """Record a row read by another query (e.g. the due tickets of a sweep) as loaded."""
        batch.loaded(self.table, ticket_id, state)


def json_key(raw: bytes, *fields: str) -> str | None:
    """The first of ``fields`` present as a string in a JSON object message (to prefetch state), unvalidated."""
    try:
        value = parse_json(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    for name in fields:
        key = value.get(name)
        if isinstance(key, str) and key:
            return key if key == well_formed(key) else None  # unencodable: no row has it, and no query can send it
    return None


def escalation_row(e: Any) -> tuple[Any, ...]:
    """The ESCALATION_INSERT columns of an ``schemas.Escalation``."""
    return (e.escalation_id, e.kind.value, e.jurisdiction.value if e.jurisdiction else None, e.ticket_id,
            e.campaign_id, e.unit, e.level, e.threshold, e.at, e.model_dump_json())
