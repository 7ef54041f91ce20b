"""A unit's signature on its updates (Kafka headers hotline_unit and hotline_unit_signature, HMAC-SHA256)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.domain.sla import SlaRules
from services.platform.desk_signature import signature
from services.platform.unit_signature import (CODE_HEADER, HEADER, UnitKeys, for_ticket, new_keys_file,
                                              signed_headers, verify)

UNITS = {"qingpu.cgzf": ("qingpu", "区城管执法局"), "qingpu.fgj": ("qingpu", "区房管局"),
         "changning.cgzf": ("changning", "区城管执法局"), "qingpu.xiayang": ("qingpu", "夏阳街道")}
KEY, OLD, OTHER = "q" * 32, "o" * 40, "c" * 64
RAW = b'{"event_id":"U-1","ticket_id":"QP-1","action":"resolve","unit":"\xe5\x8c\xba\xe5\x9f\x8e\xe7\xae\xa1"}'
CGZF = "区城管执法局"


@pytest.fixture
def keys(tmp_path: Path) -> UnitKeys:
    path = tmp_path / "unit-keys.yaml"
    path.write_text(f"qingpu.cgzf: [{OLD}, {KEY}]\nchangning.cgzf: {OTHER}\n", encoding="utf-8")
    return UnitKeys.load(path, UNITS)


def test_without_a_keys_file_nothing_is_checked() -> None:
    assert verify(None, RAW, None, CGZF) is None
    assert for_ticket(None, None, "qingpu", CGZF) is None


def test_an_update_signed_by_its_unit_passes_both_checks(keys: UnitKeys) -> None:
    for key in (KEY, OLD):  # either key while one is replaced
        headers = signed_headers("qingpu.cgzf", key, RAW)
        assert verify(keys, RAW, headers, CGZF) is None
        assert for_ticket(keys, headers, "qingpu", CGZF) is None
    as_text = [(CODE_HEADER, "qingpu.cgzf"), (HEADER, signature(KEY, RAW).decode().upper())]
    assert verify(keys, RAW, as_text, CGZF) is None


def test_units_not_listed_are_taken_on_trust(keys: UnitKeys) -> None:
    assert verify(keys, RAW, [("ce_id", b"x")], "区房管局") is None
    assert for_ticket(keys, [("ce_id", b"x")], "qingpu", "区房管局") is None
    assert keys.unlisted() == ["qingpu.fgj", "qingpu.xiayang"]
    early = signed_headers("qingpu.fgj", "f" * 32, RAW)  # its system signs before the unit is listed: not refused
    assert verify(keys, RAW, early, "区房管局") is None and for_ticket(keys, early, "qingpu", "区房管局") is None


@pytest.mark.parametrize(("headers", "field", "says"), [
    (signed_headers("qingpu.cgzf", OTHER, RAW), HEADER, "does not match the message under the keys of qingpu.cgzf"),
    (signed_headers("qingpu.cgzf", KEY, RAW.replace(b"QP-1", b"QP-2")), HEADER, "does not match"),
    ([(CODE_HEADER, b"qingpu.cgzf")], HEADER, "carries 0 signature headers"),
    ([(CODE_HEADER, b"qingpu.cgzf"), (HEADER, None)], HEADER, "carries 1 signature headers with a value"),
    ([*signed_headers("qingpu.cgzf", KEY, RAW), (HEADER, signature(KEY, RAW))], HEADER, "carries 2"),
    ([(HEADER, signature(KEY, RAW))], CODE_HEADER, None),  # names no unit: as unsigned, judged with the ticket
    ([(CODE_HEADER, b"\xff"), (HEADER, signature(KEY, RAW))], CODE_HEADER, "not text"),
    ([(CODE_HEADER, None), (HEADER, signature(KEY, RAW))], CODE_HEADER, "found 1, or a value that is not text"),
    ([(CODE_HEADER, b"qingpu.cgzf"), *signed_headers("qingpu.cgzf", KEY, RAW)], CODE_HEADER, "found 2"),
    (signed_headers("qingpu.fgj", KEY, RAW), CODE_HEADER, None),  # not listed: as unsigned, judged with the ticket
    (signed_headers("changning.cgzf", OTHER, RAW), "unit", None),  # valid, but of 长宁: judged once the ticket is known
])
def test_a_wrongly_signed_update_is_refused(keys: UnitKeys, headers, field: str,  # type: ignore[no-untyped-def]
                                                          says: str | None) -> None:
    rejection = verify(keys, RAW, headers, CGZF)
    if says is None:
        assert rejection is None
        return
    assert rejection is not None and (rejection.reason, rejection.field) == ("unit_signature", field)
    assert says in rejection.error
    assert all(key not in rejection.error for key in (KEY, OLD, OTHER))


def test_a_unit_cannot_sign_in_another_units_name(keys: UnitKeys) -> None:
    headers = signed_headers("qingpu.cgzf", KEY, RAW)
    for rejection in (verify(keys, RAW, headers, "区房管局"), for_ticket(keys, headers, "qingpu", "区房管局")):
        assert rejection is not None and (rejection.reason, rejection.field) == ("unit_signature", "unit")
        assert rejection.error == "signed by qingpu.cgzf (区城管执法局) but written in the name of 区房管局"


def test_keys_stay_out_of_repr(keys: UnitKeys) -> None:
    assert KEY not in repr(keys) and OLD not in repr(keys) and "qingpu.cgzf" in repr(keys)


def test_once_the_ticket_is_known_a_signature_of_another_district_or_none_is_refused(keys: UnitKeys) -> None:
    changning = signed_headers("changning.cgzf", OTHER, RAW)  # the same unit name, another district's key
    assert verify(keys, RAW, changning, CGZF) is None
    rejection = for_ticket(keys, changning, "qingpu", CGZF)
    assert rejection is not None and (rejection.reason, rejection.field) == ("unit_signature", CODE_HEADER)
    assert rejection.error == "signed by changning.cgzf of changning, but the ticket is qingpu's"
    assert for_ticket(keys, changning, "changning", CGZF) is None
    for headers in (None, [(HEADER, b"sha256=00")], [(CODE_HEADER, b"qingpu.fgj")]):  # unsigned, or not by a key holder
        rejection = for_ticket(keys, headers, "qingpu", CGZF)
        assert rejection is not None and (rejection.reason, rejection.field) == ("unit_signature", HEADER)
        assert rejection.error.startswith("区城管执法局 (qingpu.cgzf) signs its updates and this one carries no valid")


@pytest.mark.parametrize(("text", "says"), [
    ("qingpu.cgzf: short\n", "qingpu.cgzf: 1 of its keys are shorter than 32 characters"),
    (f"qingpu.nope: {KEY}\n", "entry 1: its code is not a unit or territory of the rulebooks"),
    (f"qingpu.cgzf: [{OLD}]\n{KEY}: qingpu.fgj\n", "entry 2: its code is not a unit"),  # the wrong way round
    (f"qingpu.cgzf: [{OLD}]\nqingpu.cgzf: [{KEY}]\n", "line 2: qingpu.cgzf is listed twice (list its keys on one"),
    ("[" * 5000, "not a YAML document"),
    ("qingpu.cgzf: []\n", "qingpu.cgzf: no key"),
    ("qingpu.cgzf: {a: b}\n", "qingpu.cgzf: a key or a list of keys is expected"),
    (f"qingpu.cgzf: [{KEY}]\nqingpu.fgj: [{KEY}]\n", "qingpu.fgj: has the same key as qingpu.cgzf"),
    (f"- {KEY}\n", "a mapping of unit code to its keys is expected"),
    (f"qingpu.cgzf: [{KEY}\n", "not a YAML document"),
])
def test_a_bad_keys_file_names_the_problem_and_never_a_key(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as err:
        UnitKeys.load(path, UNITS)
    assert f"HOTLINE_UNIT_KEYS_FILE={path}" in str(err.value) and says in str(err.value)
    assert all(k not in str(err.value) for k in (KEY, OLD)) and "short" not in str(err.value).replace("shorter", "")
    with pytest.raises(ValueError, match="cannot be read"):
        UnitKeys.load(tmp_path / "missing.yaml", UNITS)


def test_a_new_keys_file_gives_every_unit_of_the_rulebooks_its_own_key(tmp_path: Path) -> None:
    units = SlaRules.load().units
    assert units["qingpu.xiayang"] == ("qingpu", "夏阳街道") and units["changning.cgzf"] == ("changning", CGZF)
    text = new_keys_file(units)
    keys = yaml.safe_load(text)
    assert set(keys) == set(units) and len({k for v in keys.values() for k in v}) == len(units)
    path = tmp_path / "unit-keys.yaml"
    path.write_text(text, encoding="utf-8")
    loaded = UnitKeys.load(path, units)
    assert loaded.unlisted() == [] and "# qingpu 夏阳街道" in text


def test_the_asyncapi_document_declares_the_units_headers_on_updates_only() -> None:
    import re

    from schemas.generate import asyncapi

    messages = asyncapi()["components"]["messages"]
    declared = messages["unit_update"]["headers"]["properties"]
    for name, value in signed_headers("qingpu.cgzf", KEY, RAW):
        assert re.fullmatch(declared[name]["pattern"], value.decode())
    for other in ("ruling", "work_order"):
        assert not {CODE_HEADER, HEADER} & set(messages[other]["headers"]["properties"])


def test_the_demo_feeder_signs_as_each_sender_would_and_survives_odd_lines(tmp_path: Path) -> None:
    import asyncio

    from services.demo.feeder import Feeder
    from services.platform.settings import Settings

    units = SlaRules.load().units
    path = tmp_path / "unit-keys.yaml"
    path.write_text(new_keys_file(units), encoding="utf-8")
    desk_key = "d" * 32

    async def signed() -> list[object]:
        feeder = Feeder(Settings(unit_keys_file=str(path), desk_signing_keys=desk_key), "postgresql://unused")
        keys = feeder.unit_keys
        assert keys is not None
        districts = {"QP-1": "qingpu"}
        lines = [{"ticket_id": "QP-1", "action": "resolve", "unit": CGZF},  # the unit's key
                 {"ticket_id": "QP-1", "action": "callback", "unit": "区城运中心"},  # the desk's
                 {"ticket_id": "QP-404", "action": "resolve", "unit": CGZF},  # a ticket nobody knows: unsigned
                 {"ticket_id": "QP-1", "action": "resolve", "unit": ["区城管执法局"]},  # not text: unsigned
                 {"ticket_id": "QP-1", "action": ["resolve"], "unit": {"a": 1}}]
        out = [feeder._signed("updates", RAW, line, districts) for line in lines]
        await feeder.producer.stop()  # never started: nothing was sent
        await feeder.consumer.stop()
        assert verify(keys, RAW, out[0], CGZF) is None and for_ticket(keys, out[0], "qingpu", CGZF) is None
        return out

    from services.demo.feeder import _encodes, _key

    assert _key({"ticket_id": "QP-\ud800"}, "ticket_id") is None and _key({}, "ticket_id") is None  # a lone surrogate
    assert _key({"ticket_id": 7}, "ticket_id") == b"7" and not _encodes("\udc00") and _encodes("区")
    unit, desk, *unsigned = asyncio.run(signed())
    assert dict(unit)[CODE_HEADER] == b"qingpu.cgzf"  # type: ignore[arg-type]
    assert desk == [("hotline_desk_signature", signature("d" * 32, RAW))]
    assert unsigned == [None, None, None]
