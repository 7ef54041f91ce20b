"""The dispatch desk's signature (HMAC-SHA256 of the message bytes, Kafka header hotline_desk_signature)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.platform.desk_signature import HEADER, check, signature, signed_headers
from services.platform.settings import Settings

KEY = "k" * 32
OTHER = "o" * 40
RAW = b'{"event_id":"CB-1","ticket_id":"QP-1","unit":"\xe5\x8c\xba\xe5\x9f\x8e\xe8\xbf\x90\xe4\xb8\xad\xe5\xbf\x83"}'


def test_the_signature_is_the_hex_hmac_sha256_of_the_bytes() -> None:
    # RFC 4231, test case 2: what `printf %s "what do ya want for nothing?" | openssl dgst -sha256 -hmac Jefe` prints
    assert signature("Jefe", b"what do ya want for nothing?") == (
        b"sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def test_without_keys_nothing_is_checked() -> None:
    assert check((), RAW, None, "a ruling") is None


def test_a_message_signed_with_a_configured_key_passes() -> None:
    assert check((KEY,), RAW, signed_headers(KEY, RAW), "a ruling") is None
    assert check((OTHER, KEY), RAW, [("ce_id", b"x"), *signed_headers(KEY, RAW)], "a ruling") is None  # rotation
    assert check((KEY,), RAW, [(HEADER, signature(KEY, RAW).decode())], "a ruling") is None  # as text
    assert check((KEY,), RAW, [(HEADER, signature(KEY, RAW).upper())], "a ruling") is None  # hex in capitals


@pytest.mark.parametrize(("headers", "says"), [
    (None, "carries no signature"),
    ([(HEADER, None)], "carries no signature"),  # a header without a value
    ([("ce_id", b"x")], "carries no signature"),
    (signed_headers(OTHER, RAW), "does not match"),  # a key the workers do not have
    (signed_headers(KEY, RAW.replace(b"QP-1", b"QP-2")), "does not match"),  # the desk's bytes for another ticket
    ([(HEADER, b"sha256=")], "does not match"),
    ([(HEADER, b"\xff\xfe")], "does not match"),  # not even text
    ([*signed_headers(KEY, RAW), *signed_headers(OTHER, RAW)], "2 signature headers"),
])
def test_a_message_without_its_valid_signature_is_refused(headers, says: str) -> None:  # type: ignore[no-untyped-def]
    rejection = check((KEY,), RAW, headers, "a callback (回访)")
    assert rejection is not None and (rejection.reason, rejection.field) == ("desk_signature", HEADER)
    assert says in rejection.error and rejection.error.startswith("a callback (回访)")
    assert KEY not in rejection.error


def test_the_settings_take_several_keys_and_refuse_short_ones_without_showing_them() -> None:
    assert Settings(desk_signing_keys=f" {KEY} ,,{OTHER}").desk_keys == (KEY, OTHER)
    assert Settings().desk_keys == ()
    with pytest.raises(ValidationError, match="HOTLINE_DESK_SIGNING_KEYS: 1 of its keys are shorter than 32") as err:
        Settings(desk_signing_keys=f"{KEY},short-secret")
    assert "short-secret" not in str(err.value)
    assert KEY not in repr(Settings(desk_signing_keys=KEY))


def test_the_asyncapi_document_declares_the_header_on_the_desks_messages() -> None:
    import re

    from schemas.generate import asyncapi

    messages = asyncapi()["components"]["messages"]
    for name in ("ruling", "unit_update"):
        declared = messages[name]["headers"]["properties"][HEADER]
        assert re.fullmatch(declared["pattern"], signature(KEY, RAW).decode())
    assert HEADER not in messages["work_order"]["headers"]["properties"]
