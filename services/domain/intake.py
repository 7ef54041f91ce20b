"""Intake: untrusted bytes in, a normalised ``IntakeEvent`` or a ``Rejection`` out."""

from __future__ import annotations

from schemas import IntakeEvent, UnitUpdate
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
    return parsed.model_copy(update={"content": content, "address": address,
                                     "campaigns": sorted(set(parsed.campaigns))})


def accept_update(raw: bytes) -> UnitUpdate | Rejection:
    return decode(UnitUpdate, raw)
