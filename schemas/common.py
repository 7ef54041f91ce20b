"""Types shared by every contract."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class Contract(BaseModel):
    """Base of every wire model: unknown fields are an error, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


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
