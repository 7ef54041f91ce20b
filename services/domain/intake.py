"""Intake: untrusted bytes in, a normalised ``IntakeEvent`` or a ``Rejection`` out."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from schemas import IntakeEvent, UnitUpdate
from schemas.intake import MAX_ADDRESS_CHARS, MAX_CONTENT_CHARS
from services.domain.validation import Rejection, decode, normalise_text


def accept_event(raw: bytes) -> IntakeEvent | Rejection:
    """Validate and normalise one intake event (NFKC, collapsed whitespace in content and address)."""
    parsed = decode(IntakeEvent, raw)
    if isinstance(parsed, Rejection):
        return parsed
    content, address = normalise_text(parsed.content), normalise_text(parsed.address)
    if not content:
        return Rejection("empty_field", "content", "content: nothing left after removing whitespace")
    if not address:
        return Rejection("empty_field", "address", "address: nothing left after removing whitespace")
    # NFKC can lengthen a text (the ellipsis "……" becomes six full stops): the limits hold for what is sent on
    for name, text, limit in (("content", content, MAX_CONTENT_CHARS), ("address", address, MAX_ADDRESS_CHARS)):
        if len(text) > limit:
            return Rejection("too_long", name, f"{name}: {len(text)} characters once normalised (NFKC), more than "
                                               f"the limit of {limit}")
    return parsed.model_copy(update={"content": content, "address": address,
                                     "campaigns": sorted(set(parsed.campaigns))})


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def fingerprint(event: IntakeEvent) -> bytes:
    """What makes a report the same report, in 16 bytes: every field but the caller (kept out of storage) and the
    time, keys in sorted order (PostgreSQL's jsonb, where intake keeps the report, reorders the keys of the
    source's details). A redelivery or a resend has the fingerprint of the report it repeats, also when the sender
    stamps its time again: an Open311 client's retry with the same Idempotency-Key is received, and dated, later."""
    same = event.model_copy(update={"caller": None, "occurred_at": _EPOCH})
    canonical = json.dumps(same.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(canonical.encode(), digest_size=16).digest()


def stored_report(payload: Any) -> IntakeEvent | None:
    """A report intake stored earlier, read back; None when it no longer meets today's contract (stored by an older
    build: a limit or a check added since)."""
    try:
        return IntakeEvent.model_validate(payload)
    except ValidationError:
        return None


def _as_stored(report: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in report.items() if k not in ("caller", "occurred_at")}, sort_keys=True,
                      ensure_ascii=False)


def same_report(stored: IntakeEvent | Mapping[str, Any], event: IntakeEvent) -> bool:
    """Whether ``event`` is the report stored under its id (a redelivery or a resend): the same ``fingerprint``.
    ``stored`` may be the stored payload; one that no longer meets today's contract is compared as stored, field by
    field but for the caller and the time, so that it gives an ``id_conflict`` (or a duplicate), never an error
    that stops intake's batch."""
    if not isinstance(stored, IntakeEvent):
        readable = stored_report(stored)
        if readable is None:
            return _as_stored(stored) == _as_stored(event.model_dump(mode="json"))
        stored = readable
    return fingerprint(stored) == fingerprint(event)


def id_conflict(event: IntakeEvent) -> Rejection:
    """Another report already came with this ``event_id``: two systems share a numbering, or a system reused an id.
    Not a duplicate, so it is not ignored: the dead letter keeps it for the sender to renumber and resend."""
    return Rejection("id_conflict", "event_id", f"event_id: {event.event_id!r} was already accepted for a different "
                                                "report; event ids must be unique across every source")


def accept_update(raw: bytes) -> UnitUpdate | Rejection:
    return decode(UnitUpdate, raw)
