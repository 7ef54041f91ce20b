"""Callers' personal data never reaches logs or dead letters unmasked: phones written with separators, originals
cut at the size limit or not UTF-8, and nested log values and exception text."""

from __future__ import annotations

import base64
import json
import logging

import pytest
import structlog

from schemas.dead_letters import MAX_ORIGINAL_BYTES
from services.domain.privacy import mask_bytes, mask_text
from services.platform.logging import configure, get_logger


@pytest.mark.parametrize(("text", "masked"), [
    ("电话138-1234-5678", "电话138******78"),
    ("电话 138 1234 5678。", "电话 138******78。"),
    ("+86 138 1234 5678", "+86 138******78"),
    ("+86-138-1234-5678", "+86-138******78"),
    ("1381234 5678", "138******78"),
    ("021-5555 1234", "021******34"),
    ("0571-8888-8888", "057*******88"),
    ("(010) 5555-1234", "(010) 555***34"),
    ("身份证 310101 19900101 1234", "身份证 310*************34"),
])
def test_phones_written_with_separators_are_masked(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize("text", [
    "2025-05-06", "2025-05-06 09:30:00", "2025-05-06T09:00:00+08:00", "05-06 09:30", "2024-2025学年", "1990-2010年",
    "信访件 XF2025-96958", "工单 T-2025-000123", "10 000 元", "第 3 栋 1202 室", "12:30-13:45", "qingpu-2025-hotspots-12345",
])
def test_dates_times_and_reference_numbers_are_not_masked(text: str) -> None:
    assert mask_text(text) == text


def test_a_dead_letter_masks_a_phone_written_with_separators() -> None:
    doc = {"event_id": "E1", "caller": {"name": "张三", "phone": "138-1234-5678"}, "content": "电话 138 1234 5678"}
    for raw in (json.dumps(doc, ensure_ascii=False).encode(), json.dumps(doc, ensure_ascii=False).encode()[:-1]):
        original, encoding = mask_bytes(raw, MAX_ORIGINAL_BYTES)  # parsed JSON, and (cut) text
        assert encoding == "utf-8"
        assert "1234" not in original and "张三" not in original and original.count("138******78") == 2


def _long_event(filler: int) -> bytes:
    doc = {"caller": {"name": "张三丰", "phone": "13812345678"}, "id_card": "31010119900101123X",
           "content": "很" * filler, "address": "上海市青浦区"}
    return json.dumps(doc, ensure_ascii=False).encode()


@pytest.mark.parametrize("split", [1, 2])
def test_an_original_cut_at_the_limit_is_cut_between_characters(split: int) -> None:
    raw = _long_event(4000)
    start = raw.index("很".encode())
    limit = start + 3 * ((MAX_ORIGINAL_BYTES - start) // 3) + split  # inside a 很
    original, encoding = mask_bytes(raw, limit)
    assert encoding == "utf-8"
    assert original.endswith("很") and "\ufffd" not in original and "\\x" not in original
    assert len(original.encode()) <= limit
    assert "张三丰" not in original and "三丰" not in original and '"name": "张**"' in original
    assert "13812345678" not in original and "1990" not in original


def test_the_cut_at_the_real_limit_keeps_the_text() -> None:
    for extra in range(3):  # the 8 KiB limit falls on each byte of a character in turn
        raw = _long_event(4000).replace(b'"id_card"', b'"id_card"' + b" " * extra)
        original, encoding = mask_bytes(raw, MAX_ORIGINAL_BYTES)
        assert encoding == "utf-8" and "张三丰" not in original and original.endswith("很")


def test_a_binary_original_is_masked_before_encoding() -> None:
    raw = ('{"caller": {"name": "张三丰", "phone": "138-1234-5678"}, "id_card": "310101199001011234", '
           '"mobile": "13912345678", "content": "联系 139 8765 4321"}').encode()
    for bad in (b"\xff" + raw, raw[:-5] + b"\xe5\xbc"):  # not UTF-8; ends inside a character without being cut
        original, encoding = mask_bytes(bad, MAX_ORIGINAL_BYTES)
        assert encoding == "base64"
        decoded = base64.b64decode(original)
        assert "张三丰".encode() not in decoded and "三丰".encode() not in decoded
        assert '"name": "张**"'.encode() in decoded
        for number in (b"1234-5678", b"13812345678", b"310101199001011234", b"13912345678", b"8765 4321"):
            assert number not in decoded
        assert decoded[:1] == bad[:1]  # bytes that are not UTF-8 are kept as they were


def test_caller_given_as_a_string_and_escaped_names_are_masked_in_text() -> None:
    cut = '{"caller": "张三 13812345678", "name": "\\u5f20\\u4e09", "content": "x'
    masked = mask_text(cut)
    assert "张三" not in masked and "13812345678" not in masked and "\\u5f20" not in masked
    assert mask_text('{"name": "张三丰') == '{"name": "张**'  # a value the cut left open


@pytest.fixture
def log_output(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Call it to ``configure`` logging to stderr (captured in the test's own phase: pytest swaps ``sys.stderr``
    between setup and call) and get a reader of what was written; the earlier setup is put back afterwards."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def start():  # type: ignore[no-untyped-def]
        configure(level="INFO", fmt="json", service="test")
        return lambda: capsys.readouterr().err

    try:
        yield start
    finally:
        structlog.configure(**saved)
        structlog.contextvars.unbind_contextvars("service")
        root.handlers[:] = handlers
        root.setLevel(level)


def test_logs_scrub_nested_values(log_output) -> None:  # type: ignore[no-untyped-def]
    read = log_output()
    get_logger("test").info("intake", note="区房管局 工单 T1 2025-05-06", payload={
        "phone": "13812345678", "caller": {"name": "张三"}, "items": [{"name": "张三"}, ("电话 138-1234-5678",)],
        "unit": "区房管局"})
    out = read()
    assert "13812345678" not in out and "1234-5678" not in out and "张三" not in out
    line = json.loads(out)
    assert line["payload"]["phone"] == line["payload"]["caller"] == line["payload"]["items"][0]["name"] == "[redacted]"
    assert line["payload"]["items"][1] == ["电话 138******78"]
    assert line["note"] == "区房管局 工单 T1 2025-05-06" and line["payload"]["unit"] == "区房管局"


def test_logs_mask_exception_text(log_output) -> None:  # type: ignore[no-untyped-def]
    read = log_output()
    try:
        raise ValueError("caller 13812345678 张三")
    except ValueError:
        get_logger("test").exception("intake failed", caller="张三")
    out = read()
    line = json.loads(out)
    assert "13812345678" not in out and "ValueError: caller 138******78" in line["exception"]
    assert line["caller"] == "[redacted]" and line["event"] == "intake failed"


def test_stdlib_logs_are_scrubbed_too(log_output) -> None:  # type: ignore[no-untyped-def]
    read = log_output()
    try:
        raise RuntimeError("send failed for 138-1234-5678")
    except RuntimeError:
        logging.getLogger("aiokafka").exception("offset %s, caller %s", 5, "13912345678")
    out = read()
    line = json.loads(out)
    assert "13912345678" not in out and "1234-5678" not in out
    assert line["event"] == "offset 5, caller 139******78" and "RuntimeError: send failed for 138******78" in out
