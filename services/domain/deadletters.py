"""Building dead-letter records: the reason, the field, and the original bytes with personal data masked."""

from __future__ import annotations

import hashlib
from datetime import datetime

from schemas import DeadLetter
from schemas.dead_letters import MAX_ORIGINAL_BYTES
from services.domain.privacy import mask_bytes, mask_text, well_formed
from services.domain.validation import Rejection


def dead_letter(stage: str, rejection: Rejection, raw: bytes, received_at: datetime, *, topic: str | None = None,
                partition: int | None = None, offset: int | None = None) -> DeadLetter:
    """A dead letter whose id depends only on where the input came from (or on its bytes), so a redelivered
    input produces the same record and the database keeps one row. Any input gets one: text decoded from the
    input (a field name, a value quoted in the error) is made encodable first."""
    where = f"{topic}|{partition}|{offset}" if offset is not None else hashlib.sha256(raw).hexdigest()
    original, encoding = mask_bytes(raw, MAX_ORIGINAL_BYTES)
    return DeadLetter(
        dead_letter_id=hashlib.sha256(f"{stage}|{rejection.reason}|{where}".encode()).hexdigest()[:32],
        stage=stage, reason=rejection.reason, field=None if rejection.field is None else well_formed(mask_text(rejection.field)),
        error=well_formed(mask_text(rejection.error)),
        original=original, original_encoding=encoding, original_size=len(raw), topic=topic, partition=partition,
        offset=offset, received_at=received_at)
