"""Open311 GeoReport v2 on top of our contracts: pure mappings, no I/O.

* an Open311 "POST Service Request" form → the ``IntakeEvent`` JSON our intake validates
  (:func:`form_to_event`, :func:`request_event_id`);
* a ticket row (``tickets``) and/or an accepted intake record (``intake_events``) → an Open311 service request
  (:func:`service_request`);
* categories (``services/router/rulebooks/categories.yaml``) → the Open311 service list (:func:`service_list`);
* errors in the Open311 format ``[{"code": 400, "description": "..."}]`` (:class:`Open311Error`).

Caller data (name, phone) goes into the event and from there only into the unit's work order; nothing here puts
it into a response. See docs/http.md for the field and status mapping tables.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from schemas.common import Jurisdiction, Source
from services.domain.clock import CHINA_TZ
from services.domain.privacy import mask_text
from services.domain.tickets import REDIRECT_REVIEW
from services.domain.validation import Rejection

EVENT_ID_PREFIX = "O311-"
OPEN311_SOURCE = Source.hotline_12345.value  # citizens' reports through an Open311 client are hotline reports
JURISDICTIONS: tuple[str, ...] = tuple(j.value for j in Jurisdiction)
MAX_IDS_PER_QUERY = 50
CLOSED_STATUSES = frozenset({"closed", "redirected"})
NO_DEADLINE_STATUSES = frozenset({"triage", "redirected", "returned"})
RECEIVED = "received"  # accepted by intake, not routed yet (no ticket)

# IntakeEvent field (as a Rejection names it) → the Open311 parameter the client sent.
FIELD_TO_OPEN311: dict[str, str] = {
    "jurisdiction": "jurisdiction_id",
    "content": "description",
    "address": "address_string",
    "category_hint": "service_code",
    "location": "lat/long",
    "location.lat": "lat",
    "location.lon": "long",
    "caller": "first_name/last_name/phone",
    "caller.name": "first_name/last_name",
    "caller.phone": "phone",
    "occurred_at": "requested_datetime",
    "event_id": "service_request_id",
}
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class Open311Error:
    """An error for an Open311 client: HTTP status, the parameter at fault (if any) and a description."""

    code: int
    field: str | None
    description: str

    def body(self) -> list[dict[str, Any]]:
        return error_body(self.code, self.description)


def error_body(code: int, description: str) -> list[dict[str, Any]]:
    """The Open311 error format: a list of ``{code, description}``."""
    return [{"code": code, "description": description}]


def from_rejection(rejection: Rejection) -> Open311Error:
    """Our intake rejection, in Open311 terms: the field renamed to the parameter the client sent."""
    field = rejection.field
    param = FIELD_TO_OPEN311.get(field, field) if field else None
    message = rejection.error
    if field and param and param != field and message.startswith(f"{field}:"):
        message = f"{param}:{message[len(field) + 1:]}"
    return Open311Error(400, param, f"{message} (reason: {rejection.reason})")


# --------------------------------------------------------------------------- categories → services.json


def categories_path() -> Path:
    return Path(__file__).resolve().parents[1] / "router" / "rulebooks" / "categories.yaml"


def load_categories(path: Path | str | None = None) -> list[dict[str, Any]]:
    """The category entries of categories.yaml as plain dicts (id, name, keywords, ...)."""
    import yaml

    with Path(path or categories_path()).open(encoding="utf-8") as fh:
        return list(yaml.safe_load(fh)["categories"])


def _term(value: Any) -> str:
    return str(value.get("term", "")) if isinstance(value, Mapping) else str(value)


def service_list(categories: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """GET /services.json: one Open311 service per category (service_code = category id)."""
    out = []
    for cat in categories:
        keywords = [t for t in (_term(k) for k in cat.get("keywords") or []) if t]
        out.append({
            "service_code": cat["id"],
            "service_name": cat["name"],
            "description": cat["name"],
            "metadata": False,
            "type": "realtime",
            "keywords": ",".join(keywords),
            "group": None,
        })
    return out


def category_names(categories: list[dict[str, Any]]) -> dict[str, str]:
    return {str(c["id"]): str(c["name"]) for c in categories}


# --------------------------------------------------------------------------- POST /requests.json → IntakeEvent


def request_event_id(api_key: str, idempotency_key: str | None, body: bytes, now: datetime) -> str:
    """``O311-`` + 20 hex of sha256 over the API key and the ``Idempotency-Key`` (when the client sent one: a
    retry maps to the same event id and intake recognises the duplicate), else over the body and the time."""
    digest = hashlib.sha256()
    digest.update(b"open311\0")
    digest.update(api_key.encode("utf-8"))
    digest.update(b"\0")
    if idempotency_key:
        digest.update(b"idempotency-key\0")
        digest.update(idempotency_key.encode("utf-8"))
    else:
        digest.update(b"body\0")
        digest.update(body)
        digest.update(b"\0")
        digest.update(now.isoformat().encode())
    return EVENT_ID_PREFIX + digest.hexdigest()[:20]


def _text(form: Mapping[str, Any], name: str) -> str | Open311Error | None:
    value = form.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return Open311Error(400, name, f"{name}: expected text, got {type(value).__name__}")
    text = str(value).strip()
    return text or None


def _coordinate(form: Mapping[str, Any], name: str) -> float | Open311Error | None:
    value = form.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return Open311Error(400, name, f"{name}: expected a number in decimal degrees")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer too large for a float
        return Open311Error(400, name, f"{name}: expected a number in decimal degrees")
    if not math.isfinite(number):
        return Open311Error(400, name, f"{name}: expected a finite number in decimal degrees")
    return number


def coordinate_address(lat: float, lon: float) -> str:
    """The address of a report located by coordinates only, as a unit reads it: ``北纬31.100000 东经121.121500``.
    Six decimals and the hemisphere words keep two places apart when the repeat merge drops punctuation and spaces
    from addresses (``31.1,121.1215`` and ``31.1121,121.5`` had become the same key)."""
    return (f"{'北纬' if lat >= 0 else '南纬'}{abs(lat):.6f} "
            f"{'东经' if lon >= 0 else '西经'}{abs(lon):.6f}")


def _full_name(first: str | None, last: str | None) -> str | None:
    parts = [p for p in (first, last) if p]
    if not parts:
        return None
    if first and last and (_CJK.search(first) or _CJK.search(last)):
        return last + first  # Chinese order: family name first, no space
    return " ".join(parts)


def form_to_event(form: Mapping[str, Any], *, event_id: str, now: datetime,
                  service_codes: Collection[str] | None = None) -> dict[str, Any] | Open311Error:
    """Open311 POST parameters → an IntakeEvent as a JSON-ready dict (validate it with ``accept_event``).

    ``now`` must be timezone-aware (Open311 has no time on POST; occurred_at is the moment of receipt).
    ``service_codes``: when given, an unknown ``service_code`` is a 400."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    values: dict[str, Any] = {}
    for name in ("jurisdiction_id", "service_code", "description", "address_string", "first_name", "last_name",
                 "phone"):
        value = _text(form, name)
        if isinstance(value, Open311Error):
            return value
        values[name] = value
    jurisdiction = values["jurisdiction_id"]
    if jurisdiction is None:
        return Open311Error(400, "jurisdiction_id", "jurisdiction_id: required, one of " + ", ".join(JURISDICTIONS))
    if jurisdiction not in JURISDICTIONS:
        return Open311Error(400, "jurisdiction_id",
                            "jurisdiction_id: unknown jurisdiction, expected one of " + ", ".join(JURISDICTIONS))
    if values["description"] is None:
        return Open311Error(400, "description", "description: required, the text of the report")
    code = values["service_code"]
    if code is not None and service_codes is not None and code not in service_codes:
        return Open311Error(400, "service_code", "service_code: not found, see GET /services.json")
    lat, lon = _coordinate(form, "lat"), _coordinate(form, "long")
    for coord in (lat, lon):
        if isinstance(coord, Open311Error):
            return coord
    if (lat is None) != (lon is None):
        return Open311Error(400, "lat/long", "lat/long: give both lat and long, or neither")
    address = values["address_string"]
    if address is None:
        if lat is None:
            return Open311Error(400, "address_string",
                                "address_string: a location is required: address_string, or lat and long")
        address = coordinate_address(lat, lon)
    event: dict[str, Any] = {
        "event_id": event_id,
        "source": OPEN311_SOURCE,
        "jurisdiction": jurisdiction,
        "occurred_at": now.isoformat(),
        "content": values["description"],
        "address": address,
    }
    if code is not None:
        event["category_hint"] = code
    if lat is not None:
        event["location"] = {"lat": lat, "lon": lon}
    name = _full_name(values["first_name"], values["last_name"])
    if name or values["phone"]:
        event["caller"] = {k: v for k, v in (("name", name), ("phone", values["phone"])) if v}
    return event


# --------------------------------------------------------------------------- rows → GET /requests/{id}.json


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def iso(value: Any) -> str | None:
    """Open311 dates: ISO 8601 with the offset, in China Standard Time, to the second."""
    moment = _when(value)
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.isoformat(timespec="seconds")
    return moment.astimezone(CHINA_TZ).isoformat(timespec="seconds")


def expected_deadline(status: str, state: Mapping[str, Any] | None) -> Any:
    """The resolve deadline in force: the last due segment of the current cycle; None without one."""
    if not state or status in NO_DEADLINE_STATUSES:
        return None
    cycles = state.get("cycles") or []
    if not cycles:
        return None
    cycle = cycles[-1]
    if cycle.get("ended_at"):
        return None
    due = cycle.get("due") or []
    return due[-1].get("due") if due else None


def _under_review(status: str, state: Mapping[str, Any] | None) -> bool:
    """A redirect the dispatch desk reviews (the report also names a civic matter): open until the desk rules."""
    transitions = (state or {}).get("transitions") or []
    return status == "redirected" and bool(transitions) and transitions[0].get("action") == "redirect" and \
        transitions[0].get("note") == REDIRECT_REVIEW


def status_notes(status: str, state: Mapping[str, Any] | None) -> str:
    """Our detailed status; for triage and redirect the reason (e.g. ``triage: no_rule_matched``)."""
    if status in ("triage", "redirected") and state:
        for transition in reversed(state.get("transitions") or []):
            if transition.get("to_status") == status:
                reason = transition.get("reason")
                review = f"; {REDIRECT_REVIEW}" if _under_review(status, state) else ""
                return f"{status}: {reason}{review}" if reason else status
    return status


def service_request(service_request_id: str, intake: Mapping[str, Any] | None, ticket: Mapping[str, Any] | None,
                    names: Mapping[str, str]) -> dict[str, Any] | None:
    """One Open311 service request from what PostgreSQL knows, or None when it knows nothing.

    ``intake``: the ``intake_events`` row (event_id, ticket_id, jurisdiction, occurred_at, content, payload,
    received_at); ``ticket``: the ``tickets`` row of ``intake.ticket_id`` — the event's own ticket, or the open
    ticket it was merged into (并单) — with ticket_id, status, category, unit, opened_at, state, updated_at.
    ``payload`` is stored without the caller; nothing of the caller is read here."""
    if intake is None and ticket is None:
        return None
    payload: Mapping[str, Any] = (intake or {}).get("payload") or {}
    state: Mapping[str, Any] | None = (ticket or {}).get("state")
    if ticket is not None:
        status = str(ticket["status"])
        category = ticket.get("category")
        transitions = (state or {}).get("transitions") or []
        updated = transitions[-1].get("at") if transitions else ticket.get("updated_at")
        requested = ticket.get("opened_at")
        unit = ticket.get("unit")
    else:
        status = RECEIVED
        category = None
        updated = (intake or {}).get("received_at")
        requested = (intake or {}).get("occurred_at")
        unit = None
    notes = status_notes(status, state)
    merged_into = (intake or {}).get("ticket_id")
    if intake is not None and merged_into and merged_into != service_request_id:
        # a repeat report merged into an open ticket (并单): that ticket's status, this report's time and text
        notes = f"{notes}; merged into {merged_into}"
        requested = intake.get("occurred_at") or requested
    content = (intake or {}).get("content") or payload.get("content")
    location = payload.get("location") or {}
    return {
        "service_request_id": service_request_id,
        "status": "closed" if status in CLOSED_STATUSES and not _under_review(status, state) else "open",
        "status_notes": notes,
        "service_name": names.get(str(category)) if category else None,
        "service_code": category,
        "description": mask_text(str(content)) if content else None,
        "agency_responsible": unit,
        "service_notice": None,
        "requested_datetime": iso(requested),
        "updated_datetime": iso(updated),
        "expected_datetime": iso(expected_deadline(status, state)),
        "address": payload.get("address"),
        "address_id": None,
        "zipcode": None,
        "lat": location.get("lat"),
        "long": location.get("lon"),
        "media_url": None,
    }


def parse_ids(value: str | None) -> list[str] | Open311Error:
    """``service_request_id=a,b,c`` → ids (deduplicated, in order); at most MAX_IDS_PER_QUERY."""
    ids = list(dict.fromkeys(i.strip() for i in (value or "").split(",") if i.strip()))
    if not ids:
        return Open311Error(400, "service_request_id",
                            "service_request_id: required; searching by date, status or service_code is not supported")
    if len(ids) > MAX_IDS_PER_QUERY:
        return Open311Error(400, "service_request_id", f"service_request_id: at most {MAX_IDS_PER_QUERY} ids")
    return ids
