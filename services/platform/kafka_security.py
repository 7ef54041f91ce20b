"""How Kafka clients connect: TLS and SASL options from the settings, for the workers (Faust's credentials) and
for the plain aiokafka clients (topic provisioning, the HTTP entry, the demo feeder)."""

from __future__ import annotations

import ssl
from typing import Any

import faust
from faust.types.auth import CredentialsT

from services.platform.logging import get_logger
from services.platform.settings import Settings

log = get_logger(__name__)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A verifying TLS context (the brokers' certificates and host names are checked) when the protocol uses TLS."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None)
    return context


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for an aiokafka producer, consumer or admin client: bootstrap servers and security."""
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap,
                               "security_protocol": settings.kafka_security_protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                       sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password.get_secret_value())
    return options


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """The same security as Faust's ``broker_credentials`` (None: plaintext)."""
    protocol = settings.kafka_security_protocol
    if protocol == "SASL_PLAINTEXT" and settings.kafka_sasl_mechanism == "PLAIN":
        log.warning("kafka_password_in_clear", detail="SASL PLAIN without TLS sends the Kafka password unencrypted; "
                                                      "use SASL_SSL or a SCRAM mechanism")
    context = ssl_context(settings)
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(username=settings.kafka_sasl_username,
                                 password=settings.kafka_sasl_password.get_secret_value(),
                                 ssl_context=context, mechanism=settings.kafka_sasl_mechanism)
