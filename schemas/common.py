"""Types shared by every contract."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = 1


class Contract(BaseModel):
    """Base of every wire model: unknown fields are an error, values are immutable, numbers are finite (JSON has no
    NaN or Infinity: a parser that reads them, or an overflowing ``1e400``, must not pass them on as ``null``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False)


# The years an input's time may fall in. Outside them the working-day arithmetic would leave the calendar (year 1
# or 9999 overflow) and no civic report is dated there; such a time is a typing or clock error at the sender.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def in_service_years(moment: datetime) -> bool:
    """Whether an (aware) time falls in the years an input's time may: 2000-2099."""
    return EARLIEST <= moment < LATEST


def _within_years(moment: datetime) -> datetime:
    if not in_service_years(moment):
        raise PydanticCustomError("timestamp_out_of_range", "{moment} is outside the years 2000-2099",
                                  {"moment": moment.isoformat()})
    return moment


_EPOCH_NUMBER = re.compile(r"\s*[-+]?\d+(\.\d*)?\s*")


def _not_a_number(value: object) -> object:
    """Pydantic would read a number, or a string of digits, as seconds since 1970 (without an offset, in UTC); the
    contracts ask for ISO 8601 with a UTC offset, so both are refused (a datetime built in Python passes)."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and _EPOCH_NUMBER.fullmatch(value)):
        raise PydanticCustomError("datetime_parsing", "expected ISO 8601 with a UTC offset, not a number of seconds")
    return value


EventTime = Annotated[AwareDatetime, BeforeValidator(_not_a_number), AfterValidator(_within_years)]
"""A time an input states: ISO 8601 with a UTC offset, in the years 2000-2099."""


class Source(StrEnum):
    hotline_12345 = "hotline_12345"
    petition = "petition"
    grid_inspection = "grid_inspection"
    iot_alert = "iot_alert"


class Jurisdiction(StrEnum):
    qingpu = "qingpu"
    changning = "changning"
    chongming = "chongming"
    zhalantun = "zhalantun"


class Urgency(StrEnum):
    normal = "normal"
    urgent = "urgent"


class Citation(Contract):
    """Where in the plans a rule comes from."""

    file: str = Field(description="Plan file name under plans/ (the five government plans), e.g. qingpu-2025-upgrade-work-plan.txt")
    clause: str = Field(description="Clause or task-table row, quoted as the plan numbers it")
