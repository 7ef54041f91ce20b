"""Generate JSON Schema files and the AsyncAPI 3.0 document from the pydantic models.

``hotline schemas generate`` writes them into ``schemas/generated``; ``tests/unit/test_contracts.py``
fails when the checked-in files differ from what the models produce.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from schemas import (ClockTick, DeadLetter, Escalation, IntakeEvent, RepeatReport, Ruling, TriageItem, UnitUpdate,
                     WorkOrder)

GENERATED = Path(__file__).resolve().parent / "generated"
MODELS: dict[str, type[BaseModel]] = {
    "intake_event": IntakeEvent,
    "repeat_report": RepeatReport,
    "work_order": WorkOrder,
    "triage_item": TriageItem,
    "unit_update": UnitUpdate,
    "ruling": Ruling,
    "escalation": Escalation,
    "dead_letter": DeadLetter,
    "clock_tick": ClockTick,
}
CHANNELS: list[tuple[str, str, tuple[str, ...], str, str]] = [
    # channel id, address, messages (told apart by the ce_type header), direction seen from the service, description
    ("rawEvents", "hotline.events.raw", ("intake_event",), "receive", "Events from hotline systems, untrusted."),
    ("acceptedEvents", "hotline.events.accepted", ("intake_event", "repeat_report"), "send",
     "Validated, normalised events; repeat reports (并单) keyed by the ticket they join."),
    ("workOrders", "hotline.workorders", ("work_order", "repeat_report"), "send",
     "Every dispatch and re-dispatch, and repeat reports of dispatched tickets, for the SLA service."),
    ("unitWorkOrders", "hotline.unit.{unit_code}", ("work_order", "repeat_report"), "send",
     "A unit's own work orders (lead, cooperating and territorial copies) and repeat reports of its tickets."),
    ("triage", "hotline.triage", ("triage_item", "repeat_report"), "send",
     "Triage queue, 110/119/120 redirect records and the tickets the dispatch desk closed; repeat reports of tickets "
     "never dispatched (same partition as the ticket's triage item, so the SLA service sees the ticket first)."),
    ("rulings", "hotline.rulings", ("ruling",), "receive",
     "The dispatch desk's rulings on triaged tickets: dispatch by a rule of the rulebook, or close; a dispatch also "
     "reopens a ticket the desk closed, or gives a redirected one its owner."),
    ("unitUpdates", "hotline.updates", ("unit_update",), "receive",
     "Status posted back by units; the dispatch desk's callbacks (回访), reviews of their extensions (延期审核) and "
     "reopenings of closed tickets (复核重办)."),
    ("returns", "hotline.returns", ("unit_update",), "send", "Returns (退单) accepted by the lifecycle, for the router."),
    ("escalations", "hotline.escalations", ("escalation",), "send", "Warnings, breaches, disputes, campaign alarms."),
    ("deadLetters", "hotline.deadletter", ("dead_letter",), "send", "Rejected input with reason and masked original."),
    ("clock", "hotline.clock", ("clock_tick",), "receive", "Event-time clock for the SLA worker (ticks mode)."),
]
CE_HEADERS = {
    "type": "object",
    "description": "CloudEvents 1.0 attributes, Kafka protocol binding, binary content mode.",
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string"},
        "ce_source": {"type": "string", "examples": ["/hotline/router"]},
        "ce_type": {"type": "string", "examples": ["cn.gov.12345.workorder.dispatched.v1"]},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string", "description": "the ticket id, where there is one"},
        "content-type": {"type": "string", "const": "application/json"},
    },
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time"],
}
DESK_SIGNATURE = {  # services/platform/desk_signature.py
    "type": "string", "pattern": "^sha256=[0-9a-fA-F]{64}$",
    "description": "The dispatch desk's signature, required on its messages when the workers have "
                   "HOTLINE_DESK_SIGNING_KEYS: every ruling, and the callback, review_extension and reopen updates. "
                   "'sha256=' and the hex HMAC-SHA256 of the record's value bytes under one of the keys.",
}
SIGNED_BY_THE_DESK = ("ruling", "unit_update")
UNIT_SIGNATURE = {  # services/platform/unit_signature.py
    "hotline_unit": {
        "type": "string", "pattern": "^[a-z0-9._-]+$",
        "description": "The code of the unit that signs the update (as in the rulebooks, e.g. qingpu.cgzf), with "
                       "hotline_unit_signature; required on the updates of units listed in the SLA workers' "
                       "HOTLINE_UNIT_KEYS_FILE, except the desk's callback, review_extension and reopen."},
    "hotline_unit_signature": {
        "type": "string", "pattern": "^sha256=[0-9a-fA-F]{64}$",
        "description": "The unit's signature: 'sha256=' and the hex HMAC-SHA256 of the record's value bytes under "
                       "one of that unit's keys."},
}


def _headers(name: str) -> dict[str, Any]:
    if name not in SIGNED_BY_THE_DESK:
        return CE_HEADERS
    signed = {"hotline_desk_signature": DESK_SIGNATURE, **(UNIT_SIGNATURE if name == "unit_update" else {})}
    return {**CE_HEADERS, "properties": {**CE_HEADERS["properties"], **signed}}


def json_schemas() -> dict[str, dict[str, Any]]:
    return {name: model.model_json_schema(mode="validation") for name, model in MODELS.items()}


def asyncapi() -> dict[str, Any]:
    from services.platform.codec import TYPES

    messages = {
        name: {"name": name, "contentType": "application/json", "headers": _headers(name),
               "payload": {"$ref": f"./{name}.v1.json"},
               "description": f"ce_type = {TYPES[model]}"}
        for name, model in MODELS.items()
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for cid, address, names, action, description in CHANNELS:
        channel: dict[str, Any] = {"address": address, "description": description,
                                   "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in names}}
        if "{unit_code}" in address:
            channel["parameters"] = {"unit_code": {"description": "ASCII unit code from the rulebooks"}}
        channels[cid] = channel
        operations[f"{action}{cid[0].upper()}{cid[1:]}"] = {
            "action": action, "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/{m}"} for m in names]}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "12345 hotline & work-order dispatch", "version": "1.0.0",
                 "description": "Topics of the intake, router and SLA services. Topic names carry the configurable "
                                "prefix (default 'hotline'). Keys are ticket ids unless stated."},
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def rendered() -> dict[str, str]:
    files = {f"{name}.v1.json": json.dumps(schema, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
             for name, schema in json_schemas().items()}
    files["asyncapi.yaml"] = yaml.safe_dump(asyncapi(), allow_unicode=True, sort_keys=False, width=120)
    return files


def write_all(directory: Path = GENERATED) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in rendered().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
