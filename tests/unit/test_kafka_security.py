"""Kafka connection security from the settings: validation, and the same options on both client paths."""

from __future__ import annotations

import ssl

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import ValidationError

from services.platform.kafka_security import client_options, faust_credentials, ssl_context
from services.platform.settings import Settings
from tests.tls import write_ca_and_server_cert


def test_plaintext_by_default() -> None:
    settings = Settings()
    assert client_options(settings) == {"bootstrap_servers": settings.kafka_bootstrap,
                                        "security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings) is None


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_needs_user_and_password(protocol: str) -> None:
    with pytest.raises(ValidationError, match="HOTLINE_KAFKA_SASL_USERNAME and HOTLINE_KAFKA_SASL_PASSWORD"):
        Settings(kafka_security_protocol=protocol, kafka_sasl_username="hotline")


def test_sasl_credentials_without_sasl_are_refused() -> None:
    with pytest.raises(ValidationError, match="does not use SASL"):
        Settings(kafka_sasl_username="hotline", kafka_sasl_password="pw")


def test_a_missing_certificate_file_is_named() -> None:
    with pytest.raises(ValidationError, match="HOTLINE_KAFKA_SSL_CAFILE=/nonexistent/ca.pem: no such file"):
        Settings(kafka_security_protocol="SSL", kafka_ssl_cafile="/nonexistent/ca.pem")


def test_tls_files_without_tls_are_refused() -> None:
    with pytest.raises(ValidationError, match="does not use TLS"):
        Settings(kafka_ssl_cafile="/etc/ssl/ca.pem")
    with pytest.raises(ValidationError, match="KEYFILE is set without"):
        Settings(kafka_security_protocol="SSL", kafka_ssl_keyfile="/etc/ssl/key.pem")


def test_a_settings_error_does_not_show_the_secrets() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_password="hunter2secret",
                 database_url="postgresql://hotline:dbpassword9@db/hotline")
    assert "hunter2secret" not in str(caught.value) and "dbpassword9" not in str(caught.value)
    assert "HOTLINE_KAFKA_SASL_USERNAME" in str(caught.value)


def test_the_password_is_not_in_the_settings_repr() -> None:
    settings = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="hotline",
                        kafka_sasl_password="s3cret-pw")
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in str(settings.model_dump())


def test_tls_context_verifies_the_broker(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca, _, _ = write_ca_and_server_cert(tmp_path)
    context = ssl_context(Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(ca)))
    assert context is not None
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert any(c["subject"] == ((("commonName", "hotline test CA"),),) for c in context.get_ca_certs())


def test_mutual_tls_loads_the_client_certificate(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca, cert, key = write_ca_and_server_cert(tmp_path)
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(ca), kafka_ssl_certfile=str(cert),
                        kafka_ssl_keyfile=str(key))
    assert ssl_context(settings) is not None
    with pytest.raises(ssl.SSLError):  # a certificate whose key is not its own is refused at start, not later
        ssl_context(settings.model_copy(update={"kafka_ssl_keyfile": str(ca.with_name("other-key.pem"))}))


@pytest.mark.parametrize("protocol", ["SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_workers_and_plain_clients_connect_the_same_way(protocol: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The workers' Faust credentials turn into the same aiokafka security options as the plain clients use."""
    ca, _, _ = write_ca_and_server_cert(tmp_path)
    sasl = {"kafka_sasl_username": "hotline", "kafka_sasl_password": "pw"} if protocol.startswith("SASL") else {}
    settings = Settings(kafka_security_protocol=protocol, kafka_sasl_mechanism="SCRAM-SHA-256",
                        kafka_ssl_cafile=str(ca) if protocol.endswith("SSL") else "", **sasl)
    credentials = faust_credentials(settings)
    expected_type = faust.SSLCredentials if protocol == "SSL" else faust.SASLCredentials
    assert isinstance(credentials, expected_type)
    from_faust = dict(credentials_to_aiokafka_auth(credentials))
    plain = client_options(settings)
    for key in ("security_protocol", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password"):
        assert from_faust.get(key) == plain.get(key), key
    assert (from_faust.get("ssl_context") is None) == (plain.get("ssl_context") is None)


def test_every_security_problem_is_named_at_once() -> None:
    """An operator fixing a broken configuration sees all of it in one start, not one problem per attempt."""
    with pytest.raises(ValidationError) as caught:
        Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_ssl_cafile="/nonexistent/ca.pem",
                 kafka_ssl_keyfile="/nonexistent/key.pem")
    message = str(caught.value)
    for part in ("HOTLINE_KAFKA_SASL_USERNAME and HOTLINE_KAFKA_SASL_PASSWORD are required",
                 "does not use TLS", "KEYFILE is set without", "HOTLINE_KAFKA_SSL_CAFILE=/nonexistent/ca.pem: no such file",
                 "HOTLINE_KAFKA_SSL_KEYFILE=/nonexistent/key.pem: no such file"):
        assert part in message, part
