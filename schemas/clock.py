"""Clock ticks: an explicit event-time clock for the SLA worker (used when ``HOTLINE_SLA_CLOCK=ticks``)."""

from __future__ import annotations

from typing import Literal

from schemas.common import SCHEMA_VERSION, Contract, EventTime


class ClockTick(Contract):
    schema_version: Literal[1] = SCHEMA_VERSION
    now: EventTime
