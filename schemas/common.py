"""Types shared by every contract."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = 1


class Contract(BaseModel):
    """Base of every wire model: unknown fields are an error, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


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


EventTime = Annotated[AwareDatetime, AfterValidator(_within_years)]
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
