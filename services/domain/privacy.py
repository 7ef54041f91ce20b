"""Keeping callers' personal data where it belongs.

Caller name and phone travel only inside the work order for the unit that must call back. Everything
else — logs, metric labels, dead letters, the stored intake record — gets the masked or stripped form.
"""

from __future__ import annotations

import base64
import codecs
import json
import re
from typing import Any

PII_KEYS = frozenset({"caller", "name", "phone", "id_card", "mobile"})
_DIGIT_RUN = re.compile(r"(?<!\d)(\d{3})\d{3,}(\d{2})(?!\d)")  # phones, ID card numbers, bank cards
# Phones as callers write them (the contract allows ``138-1234-5678``, ``021-5555 1234``): groups of 3+ digits
# joined by one separator, a space or hyphen, also as a Chinese input method types them (the ideographic space
# U+3000, the full-width hyphen U+FF0D, dashes U+2010–2015). Dates and times have shorter groups; a letter just
# before (``XF2025-96958``, ``T—2025—000123``) makes it a reference number; a year range (``2024-2025``) is excepted
# by _YEAR_RANGE. A full stop joins groups of decimals too (coordinates, readings, addresses), so only a mobile
# number written with full stops (``138.1234.5678``) is masked, by _DOTTED_MOBILE.
_DASH = "\\-\uff0d\u2010-\u2015"
_SEPARATOR = "[ \u3000" + _DASH + "]"
_DIGIT_GROUPS = re.compile(r"(?<![0-9A-Za-z])(?<![A-Za-z][" + _DASH + r"])\d{3,}(?:" + _SEPARATOR + r"\d{3,})+(?!\d)")
_DOTTED_MOBILE = re.compile(r"(?<![\d.．])1[3-9]\d[.．]\d{4}[.．]\d{4}(?![\d.．])")
_YEAR_RANGE = re.compile(r"(?:19|20)\d\d" + _SEPARATOR + r"(?:19|20)\d\d")
_PHONE_LIKE = re.compile(r"[0-9Xx+\-() ]+")  # what a phone or ID card number is written with
# The string value of a PII key in JSON text; a value the truncation of a dead letter left open counts too.
_PII_FIELD = re.compile(r'("(?:' + "|".join(sorted(PII_KEYS)) + r')"\s*:\s*")((?:[^"\\]|\\.)*)("?)')


def mask_name(name: str) -> str:
    return name[:1] + "*" * max(len(name) - 1, 1) if name else name


def _mask_digits(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if len(digits) < 8 or _YEAR_RANGE.fullmatch(match.group(0)):
        return match.group(0)
    return digits[:3] + "*" * (len(digits) - 5) + digits[-2:]


def _mask_field(match: re.Match[str]) -> str:
    value = match.group(2)  # with an escape (``\u5f20``) masked whole: the escapes are not decoded here
    return match.group(1) + ("***" if "\\" in value else _mask_leaf(value)) + match.group(3)


def mask_text(text: str) -> str:
    """Mask phone and ID numbers in free text, as ``138******78``: digit runs of 8+, and 8+ digits in groups
    written with hyphens or spaces (``138-1234-5678``, not dates, times or year ranges); and the string values of
    PII keys in JSON text (``"name": "张三"`` becomes ``"name": "张*"``)."""
    text = _PII_FIELD.sub(_mask_field, text)
    text = _DIGIT_GROUPS.sub(_mask_digits, text)
    text = _DOTTED_MOBILE.sub(_mask_digits, text)
    return _DIGIT_RUN.sub(lambda m: m.group(1) + "*" * (len(m.group(0)) - 5) + m.group(2), text)


def _mask_value(value: Any) -> Any:
    if isinstance(value, dict):
        # a key is the sender's text too (``{"联系人张三13812345678": ...}``): its numbers are masked as well
        return {mask_text(k): (_mask_leaf(v) if k in PII_KEYS else _mask_value(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_value(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def _mask_leaf(value: Any) -> Any:
    """A value under a PII key: a phone or ID number masked as in free text, anything else as a name."""
    if isinstance(value, dict):
        return {mask_text(k): _mask_leaf(v) for k, v in value.items()}
    if isinstance(value, str):
        masked = mask_text(value)
        return masked if masked != value and _PHONE_LIKE.fullmatch(value) else mask_name(value)
    return value if value is None or isinstance(value, (bool, int, float)) else "***"


def well_formed(text: str) -> str:
    """``text`` as it can be encoded to UTF-8 (for PostgreSQL, Kafka, the contracts): a lone surrogate, which a
    JSON escape such as ``"\\ud800"`` decodes to, is written back as that escape."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def mask_bytes(raw: bytes, limit: int) -> tuple[str, str]:
    """The original input for a dead letter: truncated to ``limit`` bytes (at a character boundary), masked, and
    its encoding. UTF-8 input is masked as JSON or, when it does not parse (a truncated document), as text; other
    input is masked as text too, its bytes that are not UTF-8 kept as they were, and encoded in base64."""
    text = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode(raw[:limit], final=len(raw) <= limit)
    try:
        text.encode("utf-8")  # the truncation leaves a split character in the decoder; only other bytes fail
    except UnicodeEncodeError:
        return base64.b64encode(mask_text(text).encode("utf-8", "surrogateescape")).decode("ascii"), "base64"
    try:
        return well_formed(json.dumps(_mask_value(json.loads(text)), ensure_ascii=False)), "utf-8"
    except (ValueError, RecursionError):
        return mask_text(text), "utf-8"
