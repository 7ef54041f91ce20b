"""Intake events: what hotline systems, inspectors, sensors and petition bodies publish."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.common import SCHEMA_VERSION, Contract, Jurisdiction, Source, Urgency

MAX_CONTENT_CHARS = 4000
MAX_ADDRESS_CHARS = 300


class Caller(Contract):
    """Personal data. Travels only to the unit's work order; never logged, masked in dead letters."""

    name: str | None = Field(default=None, max_length=64)
    phone: str | None = Field(default=None, max_length=32, pattern=r"^[0-9+\-() ]{3,32}$")


class Location(Contract):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class IntakeEvent(Contract):
    """One report entering the service. ``event_id`` becomes the ticket id of the work order it opens."""

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")
    source: Source
    jurisdiction: Jurisdiction
    occurred_at: AwareDatetime = Field(description="ISO 8601 with a UTC offset")
    content: str = Field(min_length=1, max_length=MAX_CONTENT_CHARS)
    address: str = Field(min_length=1, max_length=MAX_ADDRESS_CHARS)
    urgency: Urgency = Urgency.normal
    caller: Caller | None = None
    campaigns: list[str] = Field(default_factory=list, max_length=16)
    category_hint: str | None = Field(default=None, max_length=64)
    location: Location | None = None
