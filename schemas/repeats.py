"""Repeat reports (并单): the same matter reported again joins the open ticket instead of opening another."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.common import SCHEMA_VERSION, Contract, EventTime, Jurisdiction, Source
from schemas.intake import Caller


class RepeatReport(Contract):
    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(description="the repeat's own event_id")
    ticket_id: str = Field(description="the open ticket it joins")
    jurisdiction: Jurisdiction
    source: Source
    occurred_at: EventTime
    content: str
    address: str
    caller: Caller | None = Field(default=None, description="for the unit's callback only")
    similarity: float = Field(ge=0, le=1)
