"""Inputs that passed intake and then failed downstream, merged what differs, or kept personal data in a dead letter."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas import IntakeEvent
from services.domain.deadletters import dead_letter
from services.domain.intake import accept_event, fingerprint, same_report, stored_report
from services.domain.privacy import mask_bytes, mask_text
from services.domain.repeats import RepeatPolicy, similarity
from services.domain.validation import Rejection, decode
from services.replay.pipeline import Pipeline
from tests.conftest import cst

BASE = {"event_id": "QP-1", "source": "hotline_12345", "jurisdiction": "qingpu",
        "occurred_at": "2025-05-06T09:00:00+08:00", "content": "盈中新村12号楼楼顶搭了彩钢板房",
        "address": "上海市青浦区盈中新村12号"}


def _raw(**changes: Any) -> bytes:
    return json.dumps({**BASE, **changes}, ensure_ascii=False).encode()


def test_limits_hold_for_the_normalised_text_the_router_reads() -> None:
    """NFKC lengthens "……" (2 characters) to six full stops: a report within the limit as sent can exceed it as
    normalised, and the router, which validates what intake publishes, dead-lettered it after intake accepted it."""
    long = accept_event(_raw(content="楼顶违建" + "……" * 1990))
    assert isinstance(long, Rejection) and (long.reason, long.field) == ("too_long", "content")
    assert "NFKC" in long.error
    wide = accept_event(_raw(address="㍿" * 100))  # 100 characters as sent, 400 normalised
    assert isinstance(wide, Rejection) and (wide.reason, wide.field) == ("too_long", "address")
    within = accept_event(_raw(content="楼顶违建" + "……" * 600))
    assert isinstance(within, IntakeEvent)
    assert isinstance(decode(IntakeEvent, within.model_dump_json().encode()), IntakeEvent)


@pytest.mark.parametrize("number, field", [("NaN", "iot.readings.t"), ("Infinity", "iot.readings.t"),
                                           ("-Infinity", "iot.readings.t"), ("1e400", "iot.readings.t")])
def test_numbers_must_be_finite(number: str, field: str) -> None:
    """JSON has no NaN or Infinity; published as null, the router refused what intake had accepted."""
    iot = '{"device_type": "elevator", "device_id": "EL-1", "alert_type": "困人", "readings": {"t": %s}}' % number
    raw = _raw(source="iot_alert")[:-1] + b', "iot": ' + iot.encode() + b"}"
    result = accept_event(raw)
    assert isinstance(result, Rejection) and (result.reason, result.field) == ("invalid_value", field)
    place = _raw()[:-1] + (', "location": {"lat": %s, "lon": 121.1}}' % number).encode()
    result = accept_event(place)
    assert isinstance(result, Rejection) and (result.reason, result.field) == ("invalid_value", "location.lat")


def test_a_value_outside_a_fixed_list_is_invalid_not_a_version() -> None:
    channel = accept_event(_raw(hotline={"channel": "fax"}))
    assert isinstance(channel, Rejection) and (channel.reason, channel.field) == ("invalid_value", "hotline.channel")
    lift = accept_event(_raw(source="iot_alert", iot={"device_type": "lift", "device_id": "1", "alert_type": "困人"}))
    assert isinstance(lift, Rejection) and (lift.reason, lift.field) == ("invalid_value", "iot.device_type")
    version = accept_event(_raw(schema_version=2))
    assert isinstance(version, Rejection) and (version.reason, version.field) == ("unsupported_version",
                                                                                 "schema_version")


@pytest.mark.parametrize("when", [1746493200, "1746493200", 1746493200.5, " 1746493200 "])
def test_a_time_is_iso_8601_not_seconds_since_1970(when: object) -> None:
    result = accept_event(_raw(occurred_at=when))
    assert isinstance(result, Rejection) and (result.reason, result.field) == ("bad_timestamp", "occurred_at")


@pytest.mark.parametrize("written", ["138\u30001234\u30005678", "138－1234－5678", "138.1234.5678",
                                     "138—1234—5678", "138-1234-5678", "13812345678"])
def test_phones_written_with_a_chinese_input_method_are_masked(written: str) -> None:
    assert mask_text(f"联系电话{written}，请回电") == "联系电话138******78，请回电"
    letter = dead_letter("intake", Rejection("invalid_value", "content", "x"),
                         _raw(content=f"联系电话{written}", urgency="soon"), cst("2025-05-06 10:00"))
    assert '"content": "联系电话138******78"' in letter.original and "5678" not in letter.original


def test_dates_years_and_versions_stay_readable() -> None:
    for text in ("2024-2025年", "2024－2025年", "版本3.141.592", "2025.04.01 10:30", "XF2025-96958", "T—2025—000123",
                 "T－2025－000123", "北纬31.230416 东经121.473701", "服务器 192.168.100.200", "电表读数 10234.567 度"):
        assert mask_text(text) == text


def test_a_dead_letter_masks_numbers_in_keys_and_in_the_field_it_names() -> None:
    raw = _raw(**{"联系人张三13812345678": "x"})
    result = accept_event(raw)
    assert isinstance(result, Rejection) and result.reason == "unknown_field"
    letter = dead_letter("intake", result, raw, cst("2025-05-06 10:00"))
    assert letter.field == "联系人张三138******78"
    assert "13812345678" not in letter.original and "13812345678" not in letter.error
    assert "13812345678" not in mask_bytes(raw, 10_000)[0]
    nested = _raw(caller={"电话13812345678": "x"})
    assert "13812345678" not in mask_bytes(nested, 10_000)[0]


def test_texts_of_punctuation_only_are_not_alike() -> None:
    assert similarity("？？？", "……") == 0.0 and similarity("!!!", "!!!") == 0.0
    assert similarity("路灯不亮", "路灯不亮") == 1.0


def _alert(event_id: str, device: str, minutes: int) -> bytes:
    return json.dumps({
        "event_id": event_id, "source": "iot_alert", "jurisdiction": "qingpu",
        "occurred_at": f"2025-05-06T09:{minutes:02d}:00+08:00", "address": "青浦区盈浦街道盈中新村12号楼",
        "content": f"【智慧水表预警】盈中新村12号楼独居老人户24小时用水量为0，水表编号{device}，请社区工作人员立即上门查看。",
        "iot": {"device_type": "water_meter", "device_id": device, "alert_type": "24h_zero_flow"}},
        ensure_ascii=False).encode()


def test_alerts_of_two_devices_at_one_address_are_two_matters(router: Any, rules: Any) -> None:
    """Two households' water meters in one building raise alerts that differ only in the meter's number: each is a
    matter of its own (a second elderly resident who may need help). A device's own repeated alert still merges,
    and so does a citizen's call about the same matter."""
    first = accept_event(_alert("WM-1", "QP-WM-1001", 0))
    other = accept_event(_alert("WM-2", "QP-WM-2002", 20))
    assert isinstance(first, IntakeEvent) and isinstance(other, IntakeEvent)
    assert similarity(first.content, other.content) >= RepeatPolicy.load().min_similarity  # the text alone merges
    call = json.loads(_alert("CALL-1", "QP-WM-1001", 50))
    del call["iot"]
    call.update(source="hotline_12345", hotline={"channel": "phone"})
    pipeline = Pipeline(router=router, rules=rules)
    outcomes = [pipeline.event(raw, origin="file:e", offset=i, received_at=cst("2025-05-06 10:00"))
                for i, raw in enumerate([_alert("WM-1", "QP-WM-1001", 0), _alert("WM-2", "QP-WM-2002", 20),
                                         _alert("WM-3", "QP-WM-1001", 40),
                                         json.dumps(call, ensure_ascii=False).encode()])]
    assert outcomes == ["accepted", "accepted", "merged", "merged"]
    # a ticket a citizen opened takes no alert: it could hold another device's alert already
    later = Pipeline(router=router, rules=rules)
    outcomes = [later.event(raw, origin="file:e", offset=i, received_at=cst("2025-05-06 10:00"))
                for i, raw in enumerate([json.dumps({**call, "occurred_at": "2025-05-06T08:50:00+08:00"},
                                                    ensure_ascii=False).encode(),
                                         _alert("WM-1", "QP-WM-1001", 0), _alert("WM-2", "QP-WM-2002", 20)])]
    assert outcomes == ["accepted", "accepted", "accepted"]


def test_a_stored_report_that_no_longer_meets_the_contract_is_not_the_one_arriving_again() -> None:
    """A report an older build stored, over today's limit once normalised: reading it back gives None, which intake
    and the Open311 idempotency check take for another report (id_conflict, 409), not an error that stops a batch."""
    parsed = accept_event(_raw())
    assert isinstance(parsed, IntakeEvent)
    stored = json.loads(parsed.model_dump_json(exclude={"caller"}))
    assert stored_report(stored) == parsed.model_copy(update={"caller": None})
    assert fingerprint(stored_report(stored)) == fingerprint(parsed)  # type: ignore[arg-type]
    assert stored_report({**stored, "schema_version": 99}) is None
    assert stored_report({**stored, "occurred_at": 1700000000}) is None
    # same_report reads a stored payload: the same report, or compared as stored when today's contract refuses it
    assert same_report(stored, parsed) and same_report(stored_report(stored), parsed)  # type: ignore[arg-type]
    assert same_report({**stored, "occurred_at": "2025-05-06T10:00:00+08:00"}, parsed)  # sent again, stamped again
    assert not same_report({**stored, "content": "另一件事"}, parsed)
    assert not same_report({**stored, "schema_version": 99}, parsed)
    assert same_report({**stored, "occurred_at": 1700000000}, parsed)  # refused today, but only its time differs
