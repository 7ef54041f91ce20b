"""Dead letters: input that could not be processed, with the reason and the original bytes."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.common import SCHEMA_VERSION, Contract

MAX_ORIGINAL_BYTES = 8192


class DeadLetter(Contract):
    schema_version: Literal[1] = SCHEMA_VERSION
    dead_letter_id: str = Field(description="sha256 of stage, topic, partition and offset (or of the bytes)")
    stage: Literal["intake", "router", "sla"]
    reason: str = Field(description="machine-readable reason code, see docs/rejections.md")
    field: str | None = Field(default=None, description="the offending field, dotted path")
    error: str = Field(description="human-readable explanation")
    original: str = Field(description="original bytes, personal data masked, truncated", max_length=4 * MAX_ORIGINAL_BYTES)
    original_encoding: Literal["utf-8", "base64"] = "utf-8"
    original_size: int
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    received_at: AwareDatetime
