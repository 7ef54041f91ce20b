"""Open311 GeoReport v2 mappings without I/O: form → IntakeEvent JSON, rows → service request, errors, event ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.domain.intake import accept_event
from services.domain.repeats import RepeatPolicy
from services.domain.validation import Rejection
from services.intake import open311
from services.intake.http import ce_headers
from services.intake.open311 import Open311Error, form_to_event, request_event_id, service_request

NOW = datetime(2025, 7, 1, 2, 30, tzinfo=UTC)
CATEGORIES = open311.load_categories()
CODES = {c["id"] for c in CATEGORIES}
NAMES = open311.category_names(CATEGORIES)


def _form(**extra: object) -> dict[str, object]:
    return {"jurisdiction_id": "qingpu", "service_code": "illegal_construction",
            "description": "盈中新村12号楼一楼住户正在搭彩钢板房", "address_string": "上海市青浦区盈中新村12号", **extra}


def _event(form: dict[str, object]) -> dict[str, object]:
    event = form_to_event(form, event_id="O311-abc", now=NOW, service_codes=CODES)
    assert not isinstance(event, Open311Error), event
    return event


# ----------------------------------------------------------------------------- form → IntakeEvent


def test_form_maps_to_a_valid_intake_event() -> None:
    event = _event(_form(lat="31.15", long="121.12", first_name="小明", last_name="王", phone="13812345678",
                         email="x@example.org", media_url="http://example.org/a.jpg", api_key="k"))
    assert event == {
        "event_id": "O311-abc", "source": "hotline_12345", "jurisdiction": "qingpu",
        "occurred_at": "2025-07-01T02:30:00+00:00", "content": "盈中新村12号楼一楼住户正在搭彩钢板房",
        "address": "上海市青浦区盈中新村12号", "category_hint": "illegal_construction",
        "location": {"lat": 31.15, "lon": 121.12}, "caller": {"name": "王小明", "phone": "13812345678"},
    }
    parsed = accept_event(json.dumps(event, ensure_ascii=False).encode())
    assert not isinstance(parsed, Rejection), parsed
    assert parsed.caller is not None and parsed.caller.phone == "13812345678"


def test_latin_names_keep_first_last_order_and_caller_is_optional() -> None:
    assert _event(_form(first_name="Ada", last_name="Lovelace"))["caller"] == {"name": "Ada Lovelace"}
    assert _event(_form(phone="021-5555 1234"))["caller"] == {"phone": "021-5555 1234"}
    assert "caller" not in _event(_form())
    assert "category_hint" not in _event(_form(service_code=""))


def test_coordinates_without_address_become_the_address() -> None:
    form = _form(lat=31.15, long=121.12)
    del form["address_string"]
    event = _event(form)
    assert event["address"] == "北纬31.150000 东经121.120000" and event["location"] == {"lat": 31.15, "lon": 121.12}
    assert not isinstance(accept_event(json.dumps(event).encode()), Rejection)
    # two places ~40 km apart whose "lat,long" texts had the same repeat key once punctuation was dropped
    keys = set()
    for lat, lon in ((31.1, 121.1215), (31.1121, 121.5)):
        place = _form(lat=lat, long=lon)
        del place["address_string"]
        keys.add(RepeatPolicy.load().address_key(_event(place)["address"]))
    assert len(keys) == 2


@pytest.mark.parametrize(("change", "field"), [
    ({"jurisdiction_id": None}, "jurisdiction_id"),
    ({"jurisdiction_id": "pudong"}, "jurisdiction_id"),
    ({"description": "   "}, "description"),
    ({"description": None}, "description"),
    ({"service_code": "no_such_service"}, "service_code"),
    ({"address_string": None}, "address_string"),
    ({"lat": "north", "long": "121"}, "lat"),
    ({"lat": "31.1"}, "lat/long"),
    ({"lat": "nan", "long": "121"}, "lat"),
    ({"lat": 10 ** 400, "long": 121.1}, "lat"),  # a JSON integer too large for a float: 400, not 500
    ({"description": ["a", "b"]}, "description"),
])
def test_form_errors_name_the_open311_parameter(change: dict[str, object], field: str) -> None:
    form = {k: v for k, v in {**_form(), **change}.items() if v is not None}
    error = form_to_event(form, event_id="O311-abc", now=NOW, service_codes=CODES)
    assert isinstance(error, Open311Error)
    assert error.code == 400 and error.field == field
    assert error.description.startswith(field + ":")
    assert error.body() == [{"code": 400, "description": error.description}]


def test_contract_rejections_are_renamed_to_open311_parameters() -> None:
    event = _event(_form(lat="95", long="121", phone="call me"))
    rejection = accept_event(json.dumps(event).encode())
    assert isinstance(rejection, Rejection)
    error = open311.from_rejection(rejection)
    assert error.code == 400 and error.field in ("lat", "phone")
    assert error.description.startswith(f"{error.field}:") and "reason:" in error.description
    long_text = _event(_form(description="很" * 5000))
    error = open311.from_rejection(accept_event(json.dumps(long_text).encode()))  # type: ignore[arg-type]
    assert error.field == "description" and "too_long" in error.description


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        form_to_event(_form(), event_id="O311-abc", now=datetime(2025, 7, 1))


# ----------------------------------------------------------------------------- event ids


def test_idempotency_key_makes_the_event_id_deterministic() -> None:
    later = datetime(2025, 7, 2, tzinfo=UTC)
    first = request_event_id("key-a", "retry-1", b"body one", NOW)
    assert first == request_event_id("key-a", "retry-1", b"body two", later)  # same client, same key
    assert first != request_event_id("key-b", "retry-1", b"body one", NOW)  # keys are per API client
    assert first != request_event_id("key-a", "retry-2", b"body one", NOW)
    assert first.startswith("O311-") and len(first) == 5 + 20
    assert all(c in "0123456789abcdef" for c in first[5:])


def test_without_idempotency_key_body_and_time_decide() -> None:
    one = request_event_id("key-a", None, b"body", NOW)
    assert one == request_event_id("key-a", None, b"body", NOW)
    assert one != request_event_id("key-a", None, b"body", datetime(2025, 7, 1, 2, 30, 1, tzinfo=UTC))
    assert one != request_event_id("key-a", None, b"other", NOW)
    assert one != request_event_id("key-a", "", b"body", datetime(2025, 7, 2, tzinfo=UTC))


def test_published_headers_are_cloudevents() -> None:
    headers = dict(ce_headers("O311-abc", NOW))
    assert headers == {"ce_specversion": b"1.0", "ce_id": b"O311-abc", "ce_source": b"/hotline/http",
                       "ce_type": b"cn.gov.12345.intake.event.v1", "ce_time": b"2025-07-01T02:30:00+00:00",
                       "ce_subject": b"O311-abc", "content-type": b"application/json"}


# ----------------------------------------------------------------------------- services.json


def test_services_list_every_category() -> None:
    services = open311.service_list(CATEGORIES)
    assert len(services) == len(CATEGORIES) > 20
    first = services[0]
    assert first["service_code"] == "illegal_construction" and first["service_name"] == "违法建筑"
    assert first["type"] == "realtime" and first["metadata"] is False
    assert "违建" in first["keywords"].split(",") and "{" not in first["keywords"]


# ----------------------------------------------------------------------------- rows → service request

INTAKE = {"event_id": "E1", "ticket_id": "E1", "jurisdiction": "qingpu", "occurred_at": NOW,
          "content": "楼道里有人飞线充电，联系电话13812345678", "received_at": datetime(2025, 7, 1, 2, 30, 5, tzinfo=UTC),
          "payload": {"event_id": "E1", "address": "上海市青浦区盈中新村12号", "location": {"lat": 31.1, "lon": 121.1},
                      "content": "楼道里有人飞线充电，联系电话13812345678"}}


def _state(status: str, *, due: str | None = "2025-07-08T18:00:00+08:00", ended: bool = False,
           reason: str | None = None) -> dict[str, object]:
    cycles = [] if due is None else [{
        "index": 1, "kind": "dispatch", "dispatch_seq": 1, "unit": "区应急局", "start": "2025-07-01T10:30:01+08:00",
        "ack_due": "2025-07-02T10:30:01+08:00",
        "due": [{"effective_from": "2025-07-01T10:30:01+08:00", "due": "2025-07-07T18:00:00+08:00"},
                {"effective_from": "2025-07-03T09:00:00+08:00", "due": due}],
        "ended_at": "2025-07-02T09:00:00+08:00" if ended else None}]
    first = {"seq": 1, "update_id": "d", "action": "decision", "from_status": None, "to_status": status,
             "unit": None, "at": "2025-07-01T10:30:01+08:00", "reason": reason}
    if status in ("triage", "redirected"):
        return {"status": status, "cycles": cycles, "transitions": [first]}
    return {"status": status, "cycles": cycles, "transitions": [
        {**first, "action": "dispatch", "to_status": "dispatched"},
        {"seq": 2, "update_id": "u", "action": "update", "from_status": "dispatched", "to_status": status,
         "unit": "区应急局", "at": "2025-07-01T03:00:00+00:00", "reason": None}]}


def _ticket(status: str, **state: object) -> dict[str, object]:
    return {"ticket_id": "E1", "status": status, "category": "ebike_charging",
            "unit": None if status in ("triage", "redirected") else "区应急局", "opened_at": NOW,
            "updated_at": NOW, "state": _state(status, **state)}  # type: ignore[arg-type]


def test_dispatched_ticket_maps_to_open_request() -> None:
    item = service_request("E1", INTAKE, _ticket("acknowledged"), NAMES)
    assert item is not None
    assert item["service_request_id"] == "E1" and item["status"] == "open"
    assert item["status_notes"] == "acknowledged"
    assert item["service_code"] == "ebike_charging" and item["service_name"] == NAMES["ebike_charging"]
    assert item["agency_responsible"] == "区应急局"
    assert item["requested_datetime"] == "2025-07-01T10:30:00+08:00"
    assert item["updated_datetime"] == "2025-07-01T11:00:00+08:00"  # the last transition, in China time
    assert item["expected_datetime"] == "2025-07-08T18:00:00+08:00"  # the last due segment (an extension)
    assert item["address"] == "上海市青浦区盈中新村12号" and (item["lat"], item["long"]) == (31.1, 121.1)
    assert "13812345678" not in json.dumps(item, ensure_ascii=False)  # digit runs in the text are masked
    assert item["description"].startswith("楼道里有人飞线充电")


@pytest.mark.parametrize(("status", "open311_status"), [
    ("dispatched", "open"), ("acknowledged", "open"), ("resolved", "open"), ("reopened", "open"),
    ("returned", "open"), ("triage", "open"), ("redirected", "closed"), ("closed", "closed"),
])
def test_status_mapping(status: str, open311_status: str) -> None:
    item = service_request("E1", INTAKE, _ticket(status), NAMES)
    assert item is not None and item["status"] == open311_status
    assert item["status_notes"] == status
    no_deadline = status in ("triage", "redirected", "returned")
    assert (item["expected_datetime"] is None) == no_deadline


def test_triage_notes_carry_the_reason_and_have_no_deadline() -> None:
    ticket = {**_ticket("triage", due=None, reason="no_rule_matched"), "category": None}
    item = service_request("E1", INTAKE, ticket, NAMES)
    assert item is not None
    assert item["status_notes"] == "triage: no_rule_matched"
    assert item["expected_datetime"] is None and item["service_name"] is None and item["agency_responsible"] is None
    redirected = service_request("E1", INTAKE, _ticket("redirected", due=None, reason="119"), NAMES)
    assert redirected is not None and redirected["status_notes"] == "redirected: 119"
    assert redirected["status"] == "closed"


def test_ended_cycle_has_no_deadline_in_force() -> None:
    item = service_request("E1", INTAKE, _ticket("acknowledged", ended=True), NAMES)
    assert item is not None and item["expected_datetime"] is None


def test_accepted_but_not_routed_yet() -> None:
    item = service_request("E1", INTAKE, None, NAMES)
    assert item is not None
    assert item["status"] == "open" and item["status_notes"] == "received"
    assert item["service_code"] is None and item["expected_datetime"] is None
    assert item["requested_datetime"] == "2025-07-01T10:30:00+08:00"
    assert item["updated_datetime"] == "2025-07-01T10:30:05+08:00"


def test_repeat_report_shows_the_ticket_it_was_merged_into() -> None:
    later = datetime(2025, 7, 1, 4, 0, tzinfo=UTC)
    intake = {**INTAKE, "event_id": "E2", "ticket_id": "E1", "occurred_at": later, "content": "又有人飞线充电"}
    item = service_request("E2", intake, _ticket("acknowledged"), NAMES)
    assert item is not None and item["service_request_id"] == "E2"
    assert item["status_notes"] == "acknowledged; merged into E1" and item["agency_responsible"] == "区应急局"
    assert item["requested_datetime"] == "2025-07-01T12:00:00+08:00" and item["description"] == "又有人飞线充电"
    assert item["expected_datetime"] == "2025-07-08T18:00:00+08:00"


def test_unknown_request_is_none_and_no_caller_is_read() -> None:
    assert service_request("E1", None, None, NAMES) is None
    intake = {**INTAKE, "payload": {**INTAKE["payload"], "caller": {"name": "王小明", "phone": "13900000000"}}}
    item = service_request("E1", intake, _ticket("dispatched"), NAMES)
    text = json.dumps(item, ensure_ascii=False)
    assert "王小明" not in text and "13900000000" not in text


def test_parse_ids() -> None:
    assert open311.parse_ids("a, b,a,,c") == ["a", "b", "c"]
    for bad in (None, "", " , "):
        error = open311.parse_ids(bad)
        assert isinstance(error, Open311Error) and error.field == "service_request_id"
    assert isinstance(open311.parse_ids(",".join(str(i) for i in range(51))), Open311Error)


def test_a_redirect_the_desk_reviews_is_open_until_it_rules(router) -> None:  # type: ignore[no-untyped-def]
    """The fight went to 110; the site's noise waits for the desk's review: the caller's request is not closed."""
    from schemas import Ruling
    from services.domain import dispatch, sla
    from services.domain.tickets import TicketState
    from tests.conftest import cst
    from tests.factories import reported

    out, state = reported(router, content="工地晚上施工噪音很大，还有工人打架吵闹")

    def row(s: TicketState) -> dict[str, object]:
        return {"ticket_id": "E1", "status": s.status.value, "category": s.category, "unit": s.unit,
                "opened_at": NOW, "updated_at": NOW, "state": s.model_dump(mode="json")}

    item = service_request("E1", INTAKE, row(state), NAMES)
    assert item is not None and (item["status"], item["status_notes"]) == ("open", "redirected: 110; redirect_review")
    closing = Ruling(ruling_id="R1", ticket_id="QP-1", desk="区城运中心", action="close",
                     occurred_at=cst("2025-06-09 10:00"), reason="施工已停止，无需另行派单")
    closed = sla.on_triage(state, dispatch.on_ruling(out.ticket, closing, router).triage)  # type: ignore[union-attr, arg-type]
    item = service_request("E1", INTAKE, row(closed), NAMES)
    assert item is not None and (item["status"], item["status_notes"]) == ("closed", "closed")
    _, plain = reported(router, event_id="QP-2", content="有人持刀抢劫")
    item = service_request("E1", INTAKE, row(plain), NAMES)
    assert item is not None and (item["status"], item["status_notes"]) == ("closed", "redirected: 110")
