from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import IntakeEvent
from services.domain.deadletters import dead_letter
from services.domain.intake import accept_event, accept_update
from services.domain.privacy import mask_bytes, mask_text
from services.domain.validation import Rejection, _depth, dated_after_sending
from tests.conftest import cst

GOOD = {"event_id": "QP-1", "source": "hotline_12345", "jurisdiction": "qingpu",
        "occurred_at": "2025-05-06T09:00:00+08:00", "content": "小区里有人私搭乱建", "address": "上海市青浦区朱家角镇",
        "caller": {"name": "张三", "phone": "13812345678"}}


def _raw(**changes: object) -> bytes:
    data = {**GOOD, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not ...}, ensure_ascii=False).encode()


def test_good_event_is_normalised() -> None:
    event = accept_event(_raw(content="  路灯　不亮 ，ＡＢ１２３  "))
    assert isinstance(event, IntakeEvent)
    assert event.content == "路灯 不亮 ,AB123"


@pytest.mark.parametrize("raw, reason, field", [
    (b"", "empty", None),
    (b"   ", "empty", None),
    (b"\xff\xfe{}", "invalid_utf8", None),
    (b"{not json", "invalid_json", None),
    (b"[1, 2]", "not_an_object", None),
    (b'{"a":' * 10 + b"1" + b"}" * 10, "too_deep", None),
    (b"x" * 70000, "too_large", None),
    (_raw(jurisdiction="mars"), "unknown_jurisdiction", "jurisdiction"),
    (_raw(source="fax"), "unknown_source", "source"),
    (_raw(occurred_at="2025-05-06 09:00"), "bad_timestamp", "occurred_at"),
    (_raw(occurred_at="yesterday"), "bad_timestamp", "occurred_at"),
    (_raw(occurred_at="0001-01-01T00:30:00+08:00"), "bad_timestamp", "occurred_at"),  # would leave the calendar
    (_raw(occurred_at="9999-12-31T23:00:00+08:00"), "bad_timestamp", "occurred_at"),
    (_raw(occurred_at="1999-12-31T23:59:59+00:00"), "bad_timestamp", "occurred_at"),
    (_raw(content=...), "missing_field", "content"),
    (_raw(content=123), "wrong_type", "content"),
    (_raw(content="x" * 5000), "too_long", "content"),
    (_raw(content="   "), "empty_field", "content"),
    (_raw(content="bell\u0007"), "control_characters", "content"),
    (_raw(content="bell\u0007").decode().replace("\u0007", "\\u0007").encode(), "control_characters", "content"),
    (_raw(content="zero\u200bwidth"), "control_characters", "content"),
    (_raw(address="form\x0cfeed").decode().replace("\x0c", "\\f").encode(), "control_characters", "address"),
    (_raw(address="back\x08space").decode().replace("\x08", "\\b").encode(), "control_characters", "address"),
    (_raw(caller={"name": "x\u202e", "phone": "123"}).replace(b"\xe2\x80\xae", b"\\u202e"), "control_characters",
     "caller.name"),
    (b'{"a": [[[[[[1]]]]]]}', "too_deep", None),
    (_raw(colour="red"), "unknown_field", "colour"),
    (_raw(event_id="has space"), "invalid_value", "event_id"),
    (_raw(caller={"name": "x", "phone": "call me"}), "invalid_value", "caller.phone"),
])
def test_bad_input_is_rejected_naming_field_and_reason(raw: bytes, reason: str, field: str | None) -> None:
    result = accept_event(raw)
    assert isinstance(result, Rejection)
    assert (result.reason, result.field) == (reason, field)
    assert result.error
    if field:
        assert field in result.error


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    assert isinstance(accept_event(_raw(content="[[[[[[[[{{{{{{{{ 括号", address="}}}}]]]]")), IntakeEvent)


def _depth_by_walk(text: str) -> int:
    """The plain character walk the regular-expression scan in ``_depth`` must agree with."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet='"\\[]{}a 中\n', max_size=40))
def test_depth_counts_brackets_outside_strings_only(text: str) -> None:
    """Escapes, unterminated strings and stray closers included: a bracket inside a string never counts."""
    assert _depth(text) == _depth_by_walk(text)


def test_an_unterminated_string_hides_the_rest_in_one_pass() -> None:
    """A quote never closed, followed by many escaped quotes: the string pattern once restarted at each of them
    (18 s for 64 KB); it now runs to the end of the text, as the character walk reads it."""
    text = "[" * 7 + '"' + '\\"' * 32000 + "]" * 7
    assert _depth(text) == _depth_by_walk(text) == 7
    assert _depth('{"a": "x]]]]' + '\\"' * 100) == 1


def test_update_fields_required_by_action() -> None:
    base = {"event_id": "U1", "ticket_id": "T1", "unit": "区房管局", "occurred_at": "2025-05-06T09:00:00+08:00"}
    for action, missing in (("return", "reason"), ("extend", "new_due"), ("callback", "satisfied")):
        result = accept_update(json.dumps({**base, "action": action}).encode())
        assert isinstance(result, Rejection) and result.reason == "invalid_value"
        assert missing in result.error
    bad = accept_update(json.dumps({**base, "action": "teleport"}).encode())
    assert isinstance(bad, Rejection) and bad.field == "action"


def test_an_extension_reaches_at_most_a_year_ahead() -> None:
    """Beyond any plan's limit, and a bound on the working-day arithmetic one update can ask for."""
    base = {"event_id": "U1", "ticket_id": "T1", "unit": "区房管局", "occurred_at": "2025-05-06T09:00:00+08:00",
            "action": "extend", "reason": "需协调"}
    far = accept_update(json.dumps({**base, "new_due": "2099-01-01T00:00:00+08:00"}).encode())
    assert isinstance(far, Rejection) and (far.reason, far.field) == ("invalid_value", "new_due")
    assert not isinstance(accept_update(json.dumps({**base, "new_due": "2026-05-06T09:00:00+08:00"}).encode()),
                          Rejection)


def test_only_a_review_names_an_extension() -> None:
    base = {"event_id": "U1", "ticket_id": "T1", "unit": "区城运中心", "occurred_at": "2025-05-06T09:00:00+08:00",
            "extension_id": "X1"}
    wrong = accept_update(json.dumps({**base, "action": "acknowledge"}).encode())
    assert isinstance(wrong, Rejection) and (wrong.reason, wrong.field) == ("invalid_value", "extension_id")
    assert "review_extension" in wrong.error
    named = accept_update(json.dumps({**base, "action": "review_extension", "approved": True}).encode())
    assert not isinstance(named, Rejection) and named.extension_id == "X1"


def test_personal_data_is_masked_in_dead_letters() -> None:
    raw = _raw(jurisdiction="mars")
    letter = dead_letter("intake", accept_event(raw), raw, cst("2025-05-06 10:00"), topic="t", partition=0, offset=5)
    assert "13812345678" not in letter.original and "张三" not in letter.original
    assert "138******78" in letter.original and letter.original_size == len(raw)
    assert letter.reason == "unknown_jurisdiction"
    again = dead_letter("intake", accept_event(raw), raw, cst("2025-05-07 10:00"), topic="t", partition=0, offset=5)
    assert again.dead_letter_id == letter.dead_letter_id  # redelivery -> same record


def test_masking_of_free_text_and_binary() -> None:
    assert mask_text("电话13812345678，身份证310101199001011234") == "电话138******78，身份证310*************34"
    import base64

    text, enc = mask_bytes(b"\xff\xfe 13812345678", 100)
    assert enc == "base64" and base64.b64decode(text) == b"\xff\xfe 138******78"  # masked, other bytes as they were
    assert mask_bytes(b'{"name": "\xe5\xbc\xa0\xe4\xb8\x89", "phone": "13812345678"', 100) == (
        '{"name": "张*", "phone": "138******78"', "utf-8")


def test_source_specific_details() -> None:
    inspection = {"inspector_id": "WG0012", "case_class": "部件", "photos": ["oss://grid/1.jpg"]}
    ok = accept_event(_raw(source="grid_inspection", inspection=inspection, caller=...))
    assert isinstance(ok, IntakeEvent) and ok.inspection is not None and ok.inspection.case_class == "部件"
    mismatch = accept_event(_raw(inspection=inspection))  # a hotline event carrying inspection details
    assert isinstance(mismatch, Rejection) and "inspection" in mismatch.error
    bad_class = accept_event(_raw(source="grid_inspection", inspection={**inspection, "case_class": "其他"}))
    assert isinstance(bad_class, Rejection) and bad_class.field == "inspection.case_class"
    iot = {"device_type": "elevator", "device_id": "EL-1", "alert_type": "困人", "readings": {"floor": 3}}
    alert = accept_event(_raw(source="iot_alert", iot=iot, caller=...))
    assert isinstance(alert, IntakeEvent) and alert.iot is not None and alert.iot.readings == {"floor": 3.0}
    petition = accept_event(_raw(source="petition", petition={"petition_no": ""}))
    assert isinstance(petition, Rejection) and petition.field == "petition.petition_no"


@pytest.mark.parametrize("doc", [
    '{"a": 1, "b": 2, "a": 3}', '{"a": NaN, "b": -Infinity, "c": 1e400, "d": -0, "e": 1.5e-400}',
    '{"a": 123456789012345678901234567890, "b": 0.1000000000000000055511151231257827}', '{"a": "\\ud800"}',
    '{"a": "\\u00e9\\/\\u0000"}', '\ufeff{"a": 1}', '{"a": 1} x', '{"a": "x\x01y"}', '{"a": 1,}', "{'a': 1}",
    '[' * 300 + ']' * 300, ' {"a": [1, 2.0, true, null]}\n',
])
def test_parse_json_is_json_loads(doc: str) -> None:
    from services.domain.validation import parse_json

    for data in (doc, doc.encode("utf-8", "surrogatepass")):
        try:
            expected = repr(json.loads(data))
        except ValueError as exc:
            with pytest.raises(type(exc)) as raised:
                parse_json(data)
            assert str(raised.value) == str(exc)
        else:
            assert repr(parse_json(data)) == expected


@pytest.mark.parametrize("update, field", [
    ({"action": "return"}, "reason"),
    ({"action": "extend"}, "new_due"),
    ({"action": "callback"}, "satisfied"),
])
def test_a_check_across_fields_names_the_field_it_needs(update: dict[str, str], field: str) -> None:
    """A model-level check (a return without its reason) names the missing field like a field-level one does,
    instead of leaving the dead letter's field empty."""
    raw = json.dumps({"event_id": "U-1", "ticket_id": "QP-1", "unit": "区建管委",
                      "occurred_at": "2025-05-06T10:00:00+08:00", **update}, ensure_ascii=False).encode()
    rejection = accept_update(raw)
    assert isinstance(rejection, Rejection)
    assert (rejection.reason, rejection.field) == ("invalid_value", field)
    assert rejection.error.startswith(f"{field}: ") and "Value error" not in rejection.error


def test_a_reused_event_id_is_a_conflict_not_a_duplicate(router, rules) -> None:  # type: ignore[no-untyped-def]
    """Two systems numbering alike must not lose a report: the second is dead-lettered as id_conflict."""
    from services.domain.intake import fingerprint
    from services.replay.pipeline import Pipeline

    first = accept_event(_raw())
    resent = accept_event(_raw(occurred_at="2025-05-06T03:00:00+00:00", caller={"name": "李四", "phone": "13900000000"}))
    other = accept_event(_raw(source="petition", jurisdiction="changning", content="信访：小区停车难"))
    assert isinstance(first, IntakeEvent) and isinstance(resent, IntakeEvent) and isinstance(other, IntakeEvent)
    assert fingerprint(first) == fingerprint(resent) != fingerprint(other)  # stamped again, another caller
    # as PostgreSQL's jsonb gives a stored report back: the keys of the source's details in another order
    sensor = {"device_type": "elevator", "device_id": "EL-1", "alert_type": "困人", "readings": {"floor": 3, "door": 1}}
    a = accept_event(_raw(source="iot_alert", iot=sensor, caller=...))
    b = accept_event(_raw(source="iot_alert", iot={**sensor, "readings": {"door": 1, "floor": 3}}, caller=...))
    assert isinstance(a, IntakeEvent) and isinstance(b, IntakeEvent) and fingerprint(a) == fingerprint(b)

    pipeline = Pipeline(router=router, rules=rules, max_returns=2)
    buckets = [pipeline.event(raw, origin="file:e", offset=i, received_at=cst("2025-05-06 10:00"))
               for i, raw in enumerate([_raw(), _raw(occurred_at="2025-05-06T01:00:00+00:00"),
                                        _raw(source="petition", jurisdiction="changning", content="信访：小区停车难")])]
    assert buckets == ["accepted", "duplicate", "rejected"]
    assert [(r.reason, r.field) for r in pipeline.rejects] == [("id_conflict", "event_id")]
    assert "13812345678" not in pipeline.rejects[0].original


# --- a time after the sending time (future_timestamp) -------------------------------------------------------------

SENT = datetime(2025, 5, 6, 1, 0, tzinfo=UTC)  # 09:00 in Beijing
LEEWAY = timedelta(minutes=5)


@pytest.mark.parametrize("occurred", [SENT - timedelta(days=30), SENT, SENT + LEEWAY])
def test_a_time_up_to_the_leeway_after_sending_is_plausible(occurred: datetime) -> None:
    assert dated_after_sending(occurred, SENT, LEEWAY) is None


def test_without_a_sending_time_nothing_is_judged() -> None:
    assert dated_after_sending(SENT + timedelta(days=400), None, LEEWAY) is None


def test_a_time_after_sending_names_the_field_and_how_far_ahead() -> None:
    rejection = dated_after_sending(SENT + LEEWAY + timedelta(seconds=1), SENT, LEEWAY)
    assert rejection is not None
    assert (rejection.reason, rejection.field) == ("future_timestamp", "occurred_at")
    assert "0 h 05 min after the message was sent (2025-05-06T01:00:00+00:00)" in rejection.error
    assert "time zone" in rejection.error and "8 hours" not in rejection.error


def test_a_beijing_time_written_as_utc_is_recognised() -> None:
    """The sender meant 09:20 in Beijing (01:20 UTC) and wrote 09:20Z: eight hours ahead of its sending."""
    written = accept_update(json.dumps({"event_id": "U1", "ticket_id": "QP-1", "unit": "区建管委",
                                        "action": "acknowledge", "occurred_at": "2025-05-06T09:20:00Z"}).encode())
    assert not isinstance(written, Rejection)
    rejection = dated_after_sending(written.occurred_at, SENT + timedelta(minutes=20), LEEWAY)
    assert rejection is not None and "8 h 00 min" in rejection.error
    assert "a Beijing time written with the offset of UTC (Z or +00:00) is 8 hours ahead" in rejection.error


@pytest.mark.parametrize("timestamp", [None, -0.001, 0, 1.7e12, float("inf")])
def test_a_record_without_a_usable_timestamp_has_no_sending_time(timestamp: float | None) -> None:
    """-1 ms (no timestamp), and a timestamp out of range (microseconds sent as milliseconds) are not judged."""
    from types import SimpleNamespace

    from services.platform.worker import sent_at

    assert sent_at(SimpleNamespace(timestamp=timestamp)) is None
    assert sent_at(SimpleNamespace(timestamp=SENT.timestamp())) == SENT
