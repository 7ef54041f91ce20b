"""The dispatch desk's signature on its messages.

Units and the desk write to the same updates topic (a desk's callback must follow the unit's 办结 on the ticket's
partition), so a topic ACL cannot tell a unit's message from the desk's, and the ``unit`` field is what the sender
writes. With ``HOTLINE_DESK_SIGNING_KEYS`` set, the desk's messages carry the Kafka header ``hotline_desk_signature``:
``sha256=`` and the hex HMAC-SHA256 of the record's value bytes under one of the keys (as webhooks sign their
bodies; hex digits in either case). The SLA worker checks it on a callback (回访), a review of an extension (延期审核) and a reopening
(复核重办); the router on every ruling. A unit's system, which has no key, cannot write them in the desk's name.
Several keys are accepted at once so that a key can be replaced without a stop.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from services.domain.validation import Rejection

HEADER = "hotline_desk_signature"
_PREFIX = b"sha256="
_HOW = (f"the header {HEADER} must be 'sha256=' and the hex HMAC-SHA256 of the message's bytes under a key of "
        f"HOTLINE_DESK_SIGNING_KEYS")


def signature(key: str, raw: bytes) -> bytes:
    """The header value that signs ``raw`` with ``key``."""
    return _PREFIX + hmac.new(key.encode(), raw, hashlib.sha256).hexdigest().encode()


def signed_headers(key: str, raw: bytes) -> list[tuple[str, bytes]]:
    return [(HEADER, signature(key, raw))]


def values(headers: Iterable[tuple[str, bytes | str | None]] | None, name: str) -> list[bytes | str | None]:
    """Every value of the Kafka header ``name`` (None for a header without a value, which Kafka allows)."""
    return [v for k, v in (headers or ()) if k == name]


def matches(keys: Iterable[str], raw: bytes, value: bytes | str) -> bool:
    """Whether the header value ``value`` signs ``raw`` under one of ``keys`` (hex digits in either case)."""
    given = (value.encode() if isinstance(value, str) else bytes(value)).lower()
    return any(hmac.compare_digest(signature(key, raw), given) for key in keys)


def check(keys: tuple[str, ...], raw: bytes, headers: Iterable[tuple[str, bytes | str | None]] | None,
          what: str) -> Rejection | None:
    """None when ``raw`` is signed with one of ``keys`` (or no key is configured); else a ``desk_signature``
    rejection naming the header and why. ``what``: the message, as the error names it ("a callback (回访)")."""
    if not keys:
        return None
    found = values(headers, HEADER)
    if not found or found == [None]:
        return Rejection("desk_signature", HEADER, f"{what} is the dispatch desk's and carries no signature: {_HOW}")
    if len(found) > 1:
        return Rejection("desk_signature", HEADER, f"{what} carries {len(found)} signature headers; one is expected")
    if not matches(keys, raw, found[0]):  # type: ignore[arg-type]
        return Rejection("desk_signature", HEADER, f"{what}: the signature does not match the message under any key "
                                                   f"(another key, or bytes changed after signing); {_HOW}")
    return None
