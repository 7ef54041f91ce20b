"""Publishing a sample into the running pipeline, and knowing when the pipeline has caught up.

"Caught up" (quiescent) means: every consumer group has committed the end offset of every partition it
reads, and no outbox row is waiting to be published, twice in a row.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas import ClockTick
from services.domain.lifecycle import DESK_ACTIONS
from services.platform.codec import encode
from services.domain.routing.rulebook import load_library, unit_directory
from services.platform.desk_signature import signed_headers as desk_headers
from services.platform.kafka_security import client_options
from services.platform.settings import Settings
from services.platform.topics import names
from services.platform.unit_signature import UnitKeys, signed_headers as unit_headers

GROUPS = {"intake": ["raw"], "router": ["accepted", "returns", "rulings"],
          "sla": ["workorders", "triage", "updates", "clock"]}
CONSUMER = {name: service for service, short in GROUPS.items() for name in short}
FEEDER_TOPICS = ("raw", "updates", "rulings", "clock")  # written by systems outside the workers (here: this feeder)


def _fields(raw: bytes) -> dict[str, Any]:
    """A line's JSON object, or {} when it is not one (the pipeline dead-letters it)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _encodes(text: str) -> bool:
    """Whether UTF-8 can encode ``text`` (JSON lets a hostile line carry a lone surrogate)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _key(data: dict[str, Any], field: str) -> bytes | None:
    """The Kafka key: the line's ``field`` (None when it has none, or one UTF-8 cannot encode: a lone surrogate)."""
    key = str(data.get(field, ""))
    return key.encode() if key and _encodes(key) else None


class Feeder:
    def __init__(self, settings: Settings, dsn: str) -> None:
        self.settings = settings
        self.dsn = dsn
        self.topics = names(settings.topic_prefix)
        self.producer = AIOKafkaProducer(**client_options(settings), acks="all", linger_ms=5)
        self.consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
        self.db: asyncpg.Connection | None = None
        self.sent: dict[str, int] = dict.fromkeys(FEEDER_TOPICS, 0)
        self.baseline: dict[str, int] = {}
        self.unit_keys = (UnitKeys.load(Path(settings.unit_keys_file), unit_directory(load_library()))
                          if settings.unit_keys_file else None)

    async def __aenter__(self) -> Feeder:
        await self.producer.start()
        await self.consumer.start()
        self.db = await asyncpg.connect(self.dsn)
        self.baseline = {name: await self._processed(name) for name in FEEDER_TOPICS}
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()
        await self.consumer.stop()
        if self.db is not None:
            await self.db.close()

    async def publish(self, topic: str, lines: list[bytes], key_field: str,
                      progress: Callable[[int], None] | None = None) -> None:
        parsed = [_fields(raw) for raw in lines]
        districts = await self._districts([data.get("ticket_id") for data in parsed]) if topic == "updates" else {}
        futures = []
        for raw, data in zip(lines, parsed):
            key = _key(data, key_field)
            futures.append(await self.producer.send(self.topics[topic], raw, key=key,
                                                    headers=self._signed(topic, raw, data, districts)))
            if progress:
                progress(1)
        await asyncio.gather(*futures)
        self.sent[topic] += len(lines)

    def _signed(self, topic: str, raw: bytes, data: dict[str, Any], districts: dict[str, str]
                ) -> list[tuple[str, bytes]] | None:
        """The signature on a message, as its sender's system signs it: the dispatch desk's (rulings; callbacks,
        reviews of extensions and reopenings on the updates topic) with the first of ``HOTLINE_DESK_SIGNING_KEYS``;
        a unit's (its other updates) with the first of its keys in ``HOTLINE_UNIT_KEYS_FILE``, the unit being the
        one of that name in the ticket's district. An update of a ticket the service does not know goes unsigned."""
        action = data.get("action")
        by_desk = topic == "rulings" or (topic == "updates" and isinstance(action, str) and action in DESK_ACTIONS)
        if by_desk:
            keys = self.settings.desk_keys
            return desk_headers(keys[0], raw) if keys else None
        if topic != "updates" or self.unit_keys is None:
            return None
        district, unit = districts.get(str(data.get("ticket_id"))), data.get("unit")
        code = self.unit_keys.codes.get((district, unit)) if district and isinstance(unit, str) else None
        if code is None or code not in self.unit_keys.keys:
            return None
        return unit_headers(code, self.unit_keys.keys[code][0], raw)

    async def _districts(self, ticket_ids: list[object]) -> dict[str, str]:
        """The jurisdiction of each of these tickets the service knows (a unit's system knows its own district)."""
        if self.unit_keys is None:
            return {}
        rows = await self._fetch("SELECT ticket_id, jurisdiction FROM tickets WHERE ticket_id = ANY($1::text[])",
                                 sorted({t for t in ticket_ids if isinstance(t, str) and _encodes(t)}))
        return {r["ticket_id"]: r["jurisdiction"] for r in rows}

    async def tick(self, now: datetime) -> None:
        msg = encode(ClockTick(now=now), topic=self.topics["clock"], key=None, ce_id=f"tick:{now.isoformat()}",
                     source="/hotline/feeder", subject=None, time=now)
        await self.producer.send_and_wait(msg.topic, msg.value, headers=list(msg.headers))
        self.sent["clock"] += 1

    async def _processed(self, name: str) -> int:
        """Inputs of a topic its consuming worker recorded as processed (in the transaction that applied them)."""
        return int(await self._fetchval(  # type: ignore[call-overload]
            "SELECT count(*) FROM processed_inputs WHERE input_key LIKE $1 AND input_key NOT LIKE '%:failed'",
            f"{CONSUMER[name]}:{self.topics[name]}:%"))

    async def backlog(self) -> tuple[int, int]:
        """(messages not yet processed, messages processed) over every consumed topic, counted without trusting
        the broker's end offsets (Tansu's can trail what it has acknowledged): for topics this feeder writes, what
        it sent plus what was processed before it started; for topics the workers write, the rows of their
        outbox; at least the end offsets either way."""
        pending = done = 0
        for name in CONSUMER:
            topic = self.topics[name]
            if name in FEEDER_TOPICS:
                expected = self.baseline.get(name, 0) + self.sent[name]
            else:
                expected = int(await self._fetchval("SELECT count(*) FROM outbox WHERE topic = $1", topic))  # type: ignore[call-overload]
            partitions = [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic) or set()]
            if partitions:
                expected = max(expected, sum((await self.consumer.end_offsets(partitions)).values()))
            processed = await self._processed(name)
            pending += max(expected - processed, 0)
            done += processed
        return pending, done

    async def _fetchval(self, sql: str, *args: object) -> object:
        return await self._query("fetchval", sql, *args)

    async def _fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        return await self._query("fetch", sql, *args)  # type: ignore[no-any-return]

    async def _query(self, call: str, sql: str, *args: object) -> Any:
        """A query on the feeder's connection, reconnecting once if the database closed it."""
        for attempt in (1, 2):
            try:
                if self.db is None or self.db.is_closed():
                    self.db = await asyncpg.connect(self.dsn)
                return await getattr(self.db, call)(sql, *args)
            except (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError):
                self.db = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def pending_outbox(self) -> int:
        return int(await self._fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))  # type: ignore[arg-type]

    async def sla_behind(self) -> int:
        """Tickets with an escalation due at or before the SLA clock: the sweep is still running."""
        return int(await self._fetchval(  # type: ignore[arg-type]
            "SELECT count(*) FROM tickets, sla_clock WHERE tickets.next_check <= sla_clock.now"))

    async def wait_quiescent(self, timeout: float = 300.0, poll: float = 0.5, stall: float | None = None) -> None:
        """Wait until the pipeline is caught up (nothing pending three polls in a row).

        Without ``stall`` it fails after ``timeout`` seconds. With ``stall`` it waits as long as the pipeline keeps
        moving and fails only when nothing was processed (and the SLA sweep did not advance) for ``stall`` seconds:
        a big backlog on a slow machine is not a hang, and a hang is still reported within ``stall``.
        """
        await self.consumer.topics()  # refresh metadata so partitions_for_topic knows every topic
        loop = asyncio.get_running_loop()
        started = last_progress = loop.time()
        calm = 0
        seen: tuple[int, int] | None = None
        while True:
            pending, done = await self.backlog()
            behind = await self.sla_behind()
            busy = pending + await self.pending_outbox() + behind
            calm = calm + 1 if busy == 0 else 0
            if calm >= 3:
                return
            now = loop.time()
            if seen is None or done > seen[0] or behind < seen[1]:
                last_progress = now
            seen = (done, behind)
            if stall is None and now - started > timeout:
                raise TimeoutError(f"the pipeline did not catch up within {timeout:.0f}s ({busy} pending)")
            if stall is not None and now - last_progress > stall:
                raise TimeoutError(f"the pipeline made no progress for {stall:.0f}s ({busy} pending, "
                                   f"{done} processed, {now - started:.0f}s in all)")
            await asyncio.sleep(poll)
