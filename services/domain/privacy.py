"""Keeping callers' personal data where it belongs.

Caller name and phone travel only inside the work order for the unit that must call back. Everything
else — logs, metric labels, dead letters, the stored intake record — gets the masked or stripped form.
"""

from __future__ import annotations

import json
import re
from typing import Any

_DIGIT_RUN = re.compile(r"(?<!\d)(\d{3})\d{3,}(\d{2})(?!\d)")  # phones, ID card numbers, bank cards
_DIGIT_RUN_BYTES = re.compile(rb"\d{8,}")
_NAME_FIELD = re.compile(r'("name"\s*:\s*")([^"\\]{0,64})(")')
PII_KEYS = frozenset({"caller", "name", "phone", "id_card", "mobile"})


def mask_name(name: str) -> str:
    return name[:1] + "*" * max(len(name) - 1, 1) if name else name


def mask_text(text: str) -> str:
    """Mask digit runs of 8+ (phones, ID numbers) and JSON ``"name"`` values in free text."""
    text = _DIGIT_RUN.sub(lambda m: m.group(1) + "*" * (len(m.group(0)) - 5) + m.group(2), text)
    return _NAME_FIELD.sub(lambda m: m.group(1) + mask_name(m.group(2)) + m.group(3), text)


def _mask_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (_mask_leaf(v) if k in PII_KEYS else _mask_value(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_value(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def _mask_leaf(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask_leaf(v) for k, v in value.items()}
    if isinstance(value, str):
        return mask_text(mask_name(value)) if not any(c.isdigit() for c in value) else mask_text(value)
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
    """The original input for a dead letter: masked, truncated to ``limit`` bytes, and its encoding."""
    head = raw[:limit]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        import base64

        return base64.b64encode(_DIGIT_RUN_BYTES.sub(b"***", head)).decode("ascii"), "base64"
    try:
        return well_formed(json.dumps(_mask_value(json.loads(text)), ensure_ascii=False)), "utf-8"
    except (ValueError, RecursionError):
        return mask_text(text), "utf-8"

