"""Intake events: what hotline systems, inspectors, sensors and petition bodies publish."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from schemas.common import SCHEMA_VERSION, Contract, EventTime, Jurisdiction, Source, Urgency

MAX_CONTENT_CHARS = 4000
MAX_ADDRESS_CHARS = 300


class Caller(Contract):
    """Personal data. Travels only to the unit's work order; never logged, masked in dead letters."""

    name: str | None = Field(default=None, max_length=64)
    phone: str | None = Field(default=None, max_length=32, pattern=r"^[0-9+\-() ]{3,32}$")


class Location(Contract):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class HotlineDetails(Contract):
    """12345 hotline specifics."""

    ticket_no: str | None = Field(default=None, max_length=64, description="the hotline system's own ticket number")
    channel: Literal["phone", "app", "web", "wechat", "sms", "other"] = "phone"


class PetitionDetails(Contract):
    petition_no: str = Field(min_length=1, max_length=64, description="信访件编号")


class InspectionDetails(Contract):
    """Grid inspection (网格化管理), GB/T 30428: a case is a 部件 (component: a facility) or 事件 (event)."""

    inspector_id: str = Field(min_length=1, max_length=64)
    case_class: Literal["部件", "事件"]
    case_code: str | None = Field(default=None, max_length=32, description="GB/T 30428 category code")
    photos: list[str] = Field(default_factory=list, max_length=10, description="references (URLs or object keys)")


class IotDetails(Contract):
    """A sensor alert from the city's 数字体征 platform."""

    device_type: Literal["elevator", "water_meter", "other"]
    device_id: str = Field(min_length=1, max_length=64)
    alert_type: str = Field(min_length=1, max_length=64, description="e.g. 困人, 24h_zero_flow")
    readings: dict[str, float] = Field(default_factory=dict, max_length=20)


_DETAILS_FOR = {"hotline": "hotline_12345", "petition": "petition", "inspection": "grid_inspection",
                "iot": "iot_alert"}


class IntakeEvent(Contract):
    """One report entering the service. ``event_id`` becomes the ticket id of the work order it opens."""

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")
    source: Source
    jurisdiction: Jurisdiction
    occurred_at: EventTime = Field(description="ISO 8601 with a UTC offset")
    content: str = Field(min_length=1, max_length=MAX_CONTENT_CHARS)
    address: str = Field(min_length=1, max_length=MAX_ADDRESS_CHARS)
    urgency: Urgency = Urgency.normal
    caller: Caller | None = None
    campaigns: list[str] = Field(default_factory=list, max_length=16)
    category_hint: str | None = Field(default=None, max_length=64)
    location: Location | None = None
    hotline: HotlineDetails | None = None
    petition: PetitionDetails | None = None
    inspection: InspectionDetails | None = None
    iot: IotDetails | None = None

    @model_validator(mode="after")
    def _details_match_source(self) -> IntakeEvent:
        for name, source in _DETAILS_FOR.items():
            if getattr(self, name) is not None and self.source != source:
                raise ValueError(f"{name}: details of a {source} event, but source is {self.source.value}")
        return self
