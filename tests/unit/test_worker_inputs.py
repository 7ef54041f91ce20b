"""A worker never acknowledges an input it has not finished with, and every input can be dead-lettered.

No broker and no database: a Faust app is built (it connects only when started) and ``Runtime.complete`` is
driven with stand-in work; the dead-letter and prefetch helpers are plain functions.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from schemas import DeadLetter
from services.domain.deadletters import dead_letter
from services.domain.intake import accept_event, accept_update
from services.domain.validation import Rejection
from services.platform import db
from services.platform.batch import json_key
from services.platform.codec import Outgoing
from services.platform.metrics import Metrics
from services.platform.settings import Settings
from services.platform.worker import Runtime, make_app

EVENT = {"event_id": "E1", "source": "hotline_12345", "jurisdiction": "qingpu",
         "occurred_at": "2025-05-06T09:00:00+08:00", "content": "路灯不亮", "address": "上海市青浦区夏阳街道"}


class Stopped(Exception):
    """What the test's ``fail_stop`` raises instead of ending the process."""


def runtime() -> tuple[Runtime, list[BaseException]]:
    settings = Settings()
    rt = Runtime("router", make_app("router", settings, 9102), settings, Metrics())
    stops: list[BaseException] = []

    def fail_stop(exc: BaseException) -> None:
        stops.append(exc)
        raise Stopped

    rt.fail_stop = fail_stop  # type: ignore[method-assign, assignment]
    return rt, stops


def test_a_stopping_agent_finishes_its_batch_before_faust_acknowledges_it() -> None:
    """Faust acknowledges a batch when the agent stops iterating, and commits the offsets on stop: a SIGTERM
    in the middle of a batch must not cancel its transaction."""
    rt, stops = runtime()
    finished: list[str] = []

    async def work() -> None:
        await asyncio.sleep(0.2)
        finished.append("committed and published")

    async def go() -> None:
        agent = asyncio.ensure_future(rt.complete(work()))
        await asyncio.sleep(0.05)
        agent.cancel()  # the worker stops
        await asyncio.sleep(0.01)
        agent.cancel()  # and is asked again
        with pytest.raises(asyncio.CancelledError):
            await agent
        assert finished == ["committed and published"]  # the cancellation waited for the batch

    asyncio.run(go())
    assert stops == []


def test_a_batch_that_cannot_finish_after_the_stop_ends_the_process_without_acknowledging() -> None:
    """The database is down while the worker is told to stop: it waits ``stop_wait_seconds`` (30 s, under the
    Kubernetes grace period), then exits without acknowledging, instead of being killed mid-wait."""
    rt, stops = runtime()
    rt.stop_wait_seconds = 0.1

    async def work() -> None:
        await asyncio.sleep(30)  # with_retry waiting for the database

    async def go() -> None:
        agent = asyncio.ensure_future(rt.complete(work()))
        await asyncio.sleep(0.05)
        agent.cancel()
        with pytest.raises(Stopped):
            await agent

    asyncio.run(go())
    assert [type(e) for e in stops] == [TimeoutError]


def test_an_exception_nothing_could_record_stops_the_process_without_acknowledging() -> None:
    rt, stops = runtime()

    async def work() -> None:
        raise asyncpg.exceptions.DiskFullError("could not extend file")

    async def go() -> None:
        with pytest.raises(Stopped):
            await rt.complete(work())

    asyncio.run(go())
    assert [type(e) for e in stops] == [asyncpg.exceptions.DiskFullError]


def test_a_batch_whose_own_task_is_cancelled_is_not_acknowledged() -> None:
    rt, stops = runtime()

    async def go() -> None:
        async def work() -> None:
            asyncio.current_task().cancel()  # type: ignore[union-attr]  # e.g. the loop tearing its tasks down
            await asyncio.sleep(1)

        with pytest.raises(Stopped):
            await rt.complete(work())

    asyncio.run(go())
    assert [type(e) for e in stops] == [asyncio.CancelledError]


def test_a_finished_batch_returns_normally() -> None:
    rt, stops = runtime()

    async def work() -> None:
        await asyncio.sleep(0)

    asyncio.run(rt.complete(work()))
    assert stops == []


def _escaped(text: str) -> bytes:
    return text.encode("ascii")  # the bytes as they travel: JSON escapes, valid UTF-8


@pytest.mark.parametrize("raw, field", [
    (_escaped(json.dumps({**EVENT, "content": "路灯\udc00不亮"})), "content"),
    (_escaped(json.dumps({**EVENT, "\ud83dx": 1})), "\\ud83dx"),
    (_escaped(json.dumps({**EVENT, "event_id": "E\ud800"})), "event_id"),
])
def test_an_unpaired_surrogate_escape_is_rejected_naming_the_field_and_can_be_dead_lettered(raw: bytes,
                                                                                            field: str) -> None:
    """``"\\ud800"`` is valid JSON in valid UTF-8, but decodes to no character: PostgreSQL, Kafka and the
    contracts cannot carry it. Before, building its dead letter raised, and the worker lost the batch."""
    rejection = accept_event(raw)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "control_characters"
    record = dead_letter("intake", rejection, raw, datetime.now(UTC), topic="t", partition=0, offset=5)
    assert record.field == field
    assert field in record.error and "surrogate" in record.error
    assert ("\\udc00" in record.original) or ("\\ud8" in record.original)
    encoded = record.model_dump_json().encode("utf-8")  # as the outbox and PostgreSQL get it
    assert DeadLetter.model_validate_json(encoded) == record


def test_a_dead_letter_is_built_whatever_the_rejection_quotes() -> None:
    raw = b'{"ticket_id": "T\\ud800"}'
    rejection = Rejection("unknown_ticket", "ticket_id", "no ticket 'T\ud800' is known")
    record = dead_letter("sla", rejection, raw, datetime.now(UTC), topic="t", partition=0, offset=1)
    assert record.error == "no ticket 'T\\ud800' is known"
    record.model_dump_json().encode("utf-8")
    assert isinstance(accept_update(raw), Rejection)


def test_prefetch_keys_skip_what_no_query_could_send() -> None:
    assert json_key(b'{"ticket_id": "T-1"}', "ticket_id") == "T-1"
    assert json_key(b'{"ticket_id": "T-\\ud800"}', "ticket_id") is None
    assert json_key(b'{"ticket_id": "T-\\ud83d\\ude00"}', "ticket_id") == "T-\U0001f600"  # a pair is a character


def test_a_value_that_cannot_be_sent_is_not_retried() -> None:
    """asyncpg's DataError (a client-side InterfaceError) cannot be mended by a retry; retrying it stalled the
    agent's partitions for good."""
    calls = 0

    async def action() -> None:
        nonlocal calls
        calls += 1
        raise asyncpg.exceptions._base.DataError("invalid input for query argument $1")

    with pytest.raises(ValueError):
        asyncio.run(asyncio.wait_for(db.with_retry(action, "test"), 5))  # retried, it would time out instead
    assert calls == 1


class _Producer:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.sent: list[str] = []

    async def send(self, topic: str, *args: object) -> asyncio.Future[None]:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(topic)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@pytest.mark.parametrize("failures, published, sent", [
    ([KafkaConnectionError("down")], True, ["hotline.workorders"]),  # retried until it goes
    ([MessageSizeTooLargeError()], False, []),  # no retry mends it: left in the outbox for the relay
])
def test_publish_retries_what_a_retry_can_mend_and_leaves_the_rest_to_the_relay(
        monkeypatch: pytest.MonkeyPatch, failures: list[Exception], published: bool, sent: list[str]) -> None:
    rt, stops = runtime()
    producer = _Producer(failures)
    monkeypatch.setattr(type(rt.app), "producer", property(lambda self: producer))
    rows = [(7, Outgoing("hotline.workorders", "k", b"{}", ()))]
    assert asyncio.run(rt.publish(rows)) is published
    assert producer.sent == sent
    assert rt._published == ([7] if published else [])
    assert stops == []


def test_kafka_headers_are_stored_and_read_back_byte_for_byte() -> None:
    """The outbox and held inputs keep Kafka headers in jsonb, which holds neither invalid UTF-8 nor NUL; a header
    may have no value. A sender's headers read by ``header`` cannot raise either."""
    import json

    from services.platform.codec import header, headers_from_json, headers_json

    headers = [("ce_id", b"QP-1"), ("note", "青浦".encode()), ("empty", None), ("binary", b"\xff\xfe"), ("nul", b"a\x00b"),
               ("a\x00name", b"x")]
    stored = headers_json(headers)
    assert "\\u0000" not in stored  # PostgreSQL refuses it in jsonb
    assert headers_from_json(json.loads(stored)) == tuple(headers)
    assert headers_from_json([["ce_id", "QP-1"], ["note", "青浦"]]) == (("ce_id", b"QP-1"), ("note", "青浦".encode()))
    assert header(headers, "empty") is None and header(headers, "missing") is None
    assert header(headers, "binary") == "\ufffd\ufffd" and header(headers, "note") == "青浦"


@pytest.mark.parametrize(("value", "expected"), [
    (b"1749430800000", 1749430800.0), (None, None), (b"", None), ("²".encode(), None), ("１２３".encode(), None),
    (b"9" * 400, None), (b"-5", None), (b"\xff", None),
])
def test_the_received_time_header_of_a_foreign_producer_cannot_raise(value, expected) -> None:  # type: ignore[no-untyped-def]
    """Was: "²".isdigit() is True but int("²") raises, and an exception there ended the router (fail_stop)."""
    from services.platform.codec import RECEIVED_HEADER, received_seconds

    assert received_seconds([(RECEIVED_HEADER, value)]) == expected
