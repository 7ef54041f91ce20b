"""The wire format: JSON bodies with CloudEvents 1.0 attributes in Kafka headers (binary content mode of the
CloudEvents Kafka protocol binding): ce_specversion, ce_id, ce_source, ce_type, ce_time, ce_subject and
content-type."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from schemas import (ClockTick, DeadLetter, Escalation, IntakeEvent, RepeatReport, Ruling, TriageItem, UnitUpdate,
                     WorkOrder)

TYPES: dict[type[BaseModel], str] = {
    IntakeEvent: "cn.gov.12345.intake.event.v1",
    RepeatReport: "cn.gov.12345.intake.repeat.v1",
    WorkOrder: "cn.gov.12345.workorder.dispatched.v1",
    TriageItem: "cn.gov.12345.routing.undispatched.v1",
    UnitUpdate: "cn.gov.12345.unit.update.v1",
    Ruling: "cn.gov.12345.desk.ruling.v1",
    Escalation: "cn.gov.12345.escalation.raised.v1",
    DeadLetter: "cn.gov.12345.deadletter.v1",
    ClockTick: "cn.gov.12345.clock.tick.v1",
}


RECEIVED_HEADER = "hotline_received_ms"  # when the raw event reached Kafka (ms), for the dispatch latency metric


@dataclass(frozen=True)
class Outgoing:
    """A message to publish: topic, key, JSON body and CloudEvents headers."""

    topic: str
    key: str | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def encode(model: BaseModel, *, topic: str, key: str | None, ce_id: str, source: str, subject: str | None,
           time: datetime, ce_type: str | None = None, body: bytes | None = None) -> Outgoing:
    """``body``: the model's JSON when the caller already has it (one model sent to several topics)."""
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", ce_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", (ce_type or TYPES[type(model)]).encode()),
        ("ce_time", time.isoformat().encode()),
        ("content-type", b"application/json"),
    ]
    if subject:
        headers.append(("ce_subject", subject.encode()))
    return Outgoing(topic, key, body if body is not None else model.model_dump_json().encode(), tuple(headers))


def header(headers: object, name: str) -> str | None:
    """Read one header from Faust's or aiokafka's header representation (None: absent, or without a value; bytes
    that are not UTF-8 are read with replacement characters, so a sender's garbage cannot raise here)."""
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    for key, value in items:  # type: ignore[union-attr]
        if key == name:
            if value is None:
                return None
            return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)
    return None


def received_seconds(headers: object) -> float | None:
    """When the raw event reached Kafka (``RECEIVED_HEADER``, set by intake), as Unix seconds; None when the header
    is absent or is not a plausible count of milliseconds (a foreign producer's value must not raise)."""
    received = header(headers, RECEIVED_HEADER)
    if received is None or not (received.isascii() and received.isdigit()) or len(received) > 15:
        return None
    return int(received) / 1000


def _stored(value: bytes | str | None) -> str | dict[str, str] | None:
    if value is None:  # Kafka allows a header without a value
        return None
    raw = value.encode("utf-8", "replace") if isinstance(value, str) else bytes(value)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:  # jsonb holds neither invalid UTF-8 nor NUL: kept as base64, byte for byte
        return {"base64": base64.b64encode(raw).decode()}
    return text


def headers_json(headers: Iterable[tuple[str, bytes | str | None]]) -> str:
    """Kafka headers as they are stored in PostgreSQL (jsonb ``[[name, value], ...]``: the outbox, held inputs):
    a name or value as text, ``null`` for no value, ``{"base64": ...}`` for bytes that are not text jsonb can hold
    (invalid UTF-8, a NUL)."""
    return json.dumps([[_stored(k), _stored(v)] for k, v in headers])


def headers_from_json(pairs: list[list[Any]]) -> tuple[tuple[str, bytes | None], ...]:
    """The stored headers (``headers_json``) back as Kafka headers, as they came."""
    def value(v: Any) -> bytes | None:
        if v is None:
            return None
        return base64.b64decode(v["base64"]) if isinstance(v, dict) else str(v).encode()

    return tuple(((value(k) or b"").decode("utf-8", "replace"), value(v)) for k, v in pairs)