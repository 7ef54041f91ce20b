"""Turning untrusted bytes into contracts, or into a rejection that names the field and the reason.

Reason codes are stable, machine-readable and listed in docs/rejections.md.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json

MAX_EVENT_BYTES = 64 * 1024
MAX_DEPTH = 6
# control and invisible formatting characters; and surrogates: in parsed JSON only a lone one (an escape such as
# "\\ud800" with no partner) is left, which is no character and cannot be stored or sent as UTF-8
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\ufeff\ud800-\udfff]")
_SPACES = re.compile(r"[ \t\r\n\u3000]+")
# JSON escapes that decode to a character _CONTROL finds: \b, \f and \uXXXX (\t, \n, \r decode to allowed ones)
_CONTROL_ESCAPE = re.compile(r"\\[bfu]")

M = TypeVar("M", bound=BaseModel)

_FIELD_REASONS = {"source": "unknown_source", "jurisdiction": "unknown_jurisdiction"}
_TYPE_REASONS = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "string_too_long": "too_long",
    "too_long": "too_long",
    "string_too_short": "empty_field",
    "too_short": "empty_field",
    "timezone_aware": "bad_timestamp",
    "datetime_parsing": "bad_timestamp",
    "datetime_from_date_parsing": "bad_timestamp",
    "datetime_type": "bad_timestamp",
    "timestamp_out_of_range": "bad_timestamp",
}
_NAMED_FIELD = re.compile(r"Value error, ([a-z_][a-z0-9_.]*): (.*)", re.DOTALL)
_WRONG_TYPE = re.compile(r"_type$|^(int|float|bool|string|list|dict|model)_(parsing|type)$")


@dataclass(frozen=True)
class Rejection:
    reason: str
    field: str | None
    error: str


# a JSON string literal (escapes included; an unterminated one runs to the end of the text, so that a failed match
# never restarts at every later quote, which made the scan quadratic), and the characters that open or close a level
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def _depth(text: str) -> int:
    """How deeply the brackets outside string literals nest. The strings are cut out by one regular expression
    and only the brackets left are walked; an unterminated string hides everything after its quote."""
    outside = _STRING.sub("", text)
    depth = deepest = 0
    for ch in _BRACKET.findall(outside):
        if ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def _too_deep(text: str) -> bool:
    """Nested deeper than MAX_DEPTH? The depth cannot exceed the number of opening brackets, so the exact
    scan runs only for documents with more of them than the limit."""
    return text.count("{") + text.count("[") > MAX_DEPTH and _depth(text) > MAX_DEPTH


def _may_hold_control(text: str) -> bool:
    """Can the document, once parsed, hold a string with a control or invisible character? Only if the text
    holds one, or an escape that decodes to one; otherwise the walk over the parsed value is skipped."""
    return _CONTROL.search(text) is not None or ("\\" in text and _CONTROL_ESCAPE.search(text) is not None)


def _control_field(value: Any, path: str = "") -> str | None:
    if isinstance(value, str):
        return path or "(value)" if _CONTROL.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            found = where if _CONTROL.search(key) else _control_field(item, where)  # a bad key names itself
            if found:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _control_field(item, f"{path}[{i}]")
            if found:
                return found
    return None


# Beijing time: an ahead-of-sending time by about this much is a local time written with the offset of UTC
_CHINA_OFFSET = timedelta(hours=8)


def dated_after_sending(occurred_at: datetime, sent_at: datetime | None, leeway: timedelta) -> Rejection | None:
    """Nothing is reported before it happened: an input dated more than ``leeway`` after it was sent (its Kafka
    record's timestamp, or the moment the HTTP entry received it) carries a wrong time. Applied, a unit's step
    dated tomorrow would refuse every true step after it as out of order, and a report dated tomorrow would start
    its clocks then. The usual cause is a sender writing Beijing time with the offset of UTC (``Z``), eight hours
    ahead; the error says so. None when the time is plausible or the sending time is not known (a replay's file,
    an input held and tried again: it was judged when it came)."""
    if sent_at is None or occurred_at - sent_at <= leeway:
        return None
    ahead = occurred_at - sent_at
    minutes = int(ahead.total_seconds() // 60)
    hint = ("; a Beijing time written with the offset of UTC (Z or +00:00) is 8 hours ahead: write +08:00"
            if abs(ahead - _CHINA_OFFSET) <= timedelta(minutes=30) else
            "; check the sending system's clock and its time zone (Beijing time is +08:00)")
    return Rejection("future_timestamp", "occurred_at",
                     f"occurred_at: {occurred_at.isoformat()} is {minutes // 60} h {minutes % 60:02d} min after the "
                     f"message was sent ({sent_at.isoformat()}), more than the {int(leeway.total_seconds())} s a "
                     f"clock may be off{hint}")


def unknown_ticket(ticket_id: str) -> Rejection:
    return Rejection("unknown_ticket", "ticket_id", f"no ticket {ticket_id!r} is known")


def normalise_text(text: str) -> str:
    """NFKC (full-width digits and letters to half-width) and collapsed whitespace."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def parse_json(data: str | bytes) -> Any:
    """``json.loads(data)``, several times faster: pydantic-core's parser reads the documents it accepts (for
    those ``json.loads`` gives the same value, key order included), and ``json.loads`` reads the others, so what
    is rejected, and with which message, stays as ``json.loads`` says."""
    try:
        return from_json(data)
    except ValueError:
        return json.loads(data)


def load_json_object(raw: bytes) -> dict[str, Any] | Rejection:
    if not raw.strip():
        return Rejection("empty", None, "the message is empty or blank")
    if len(raw) > MAX_EVENT_BYTES:
        return Rejection("too_large", None, f"{len(raw)} bytes exceeds the limit of {MAX_EVENT_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection("invalid_utf8", None, f"not valid UTF-8 at byte {exc.start}")
    if _too_deep(text):
        return Rejection("too_deep", None, f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        data = parse_json(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        return Rejection("invalid_json", None, f"not valid JSON: {exc}")
    if not isinstance(data, dict):
        return Rejection("not_an_object", None, f"expected a JSON object, got {type(data).__name__}")
    bad = _control_field(data) if _may_hold_control(text) else None
    if bad:
        return Rejection("control_characters", bad,
                         f"{bad}: contains control or invisible formatting characters, or an unpaired surrogate escape")
    return data


def _rejection_from(exc: ValidationError) -> Rejection:
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    kind = first["type"]
    top = str(first["loc"][0]) if first["loc"] else ""
    if kind == "enum" and top in _FIELD_REASONS:
        reason = _FIELD_REASONS[top]
    elif kind == "literal_error":  # a value outside a fixed list: the version, or e.g. iot.device_type
        reason = "unsupported_version" if top == "schema_version" else "invalid_value"
    elif kind in _TYPE_REASONS:
        reason = _TYPE_REASONS[kind]
    elif _WRONG_TYPE.search(kind):
        reason = "wrong_type"
    else:
        reason = "invalid_value"
    message = first["msg"]
    named = _NAMED_FIELD.match(message) if field is None else None
    if named:  # a model-level check names its field the way the contracts write them: "Value error, reason: ..."
        field, message = named.group(1), named.group(2)
    if len(exc.errors()) > 1:
        message += f" (and {len(exc.errors()) - 1} more problem(s))"
    return Rejection(reason, field, f"{field or 'message'}: {message}")


def validate(model: type[M], data: dict[str, Any]) -> M | Rejection:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return _rejection_from(exc)


def decode(model: type[M], raw: bytes) -> M | Rejection:
    data = load_json_object(raw)
    if isinstance(data, Rejection):
        return data
    return validate(model, data)
