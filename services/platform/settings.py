"""Configuration, from environment variables prefixed ``HOTLINE_`` (or a ``.env`` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


MIN_DESK_KEY_LENGTH = 32


class Settings(BaseSettings):
    # hide_input_in_errors: a validation error must not print the other settings (the database URL and the SASL
    # password are among them)
    model_config = SettingsConfigDict(env_prefix="HOTLINE_", env_file=".env", extra="ignore", hide_input_in_errors=True)

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how every Kafka client connects: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism (with SASL_PLAINTEXT or SASL_SSL)")
    kafka_sasl_username: str = Field("", description="SASL user name (required with SASL_*)")
    kafka_sasl_password: SecretStr = Field(
        SecretStr(""), description="SASL password (required with SASL_*; never logged)")
    kafka_ssl_cafile: str = Field(
        "", description="CA bundle (PEM) that signed the brokers' certificates (empty: the system's CAs)")
    kafka_ssl_certfile: str = Field("", description="client certificate (PEM) for mutual TLS (empty: none)")
    kafka_ssl_keyfile: str = Field("", description="private key (PEM) of the client certificate")
    database_url: str = Field("postgresql://postgres@127.0.0.1:5432/hotline", description="PostgreSQL DSN")
    topic_prefix: str = Field("hotline", description="prefix of every topic name")
    partitions: int = Field(4, ge=1, description="partitions of the pipeline topics (fixed once created)")
    unit_topic_partitions: int = Field(1, ge=1, description="partitions of each unit's work-order topic")
    replication_factor: int = Field(1, ge=1, description="replication factor for new topics (3 in production)")
    web_host: str = Field(
        "127.0.0.1", description="interface the workers' HTTP (/metrics, /healthz) and the HTTP entry bind to")
    intake_port: int = Field(9101, description="/metrics port of the intake worker")
    router_port: int = Field(9102, description="/metrics port of the router worker")
    sla_port: int = Field(9103, description="/metrics port of the SLA worker")
    http_port: int = Field(8080, description="port of the HTTP / Open311 entry (`hotline http`)")
    http_api_keys: str = Field("", description="comma-separated API keys accepted by the HTTP entry (empty: entry refuses all)")
    desk_signing_keys: SecretStr = Field(
        SecretStr(""), description="comma-separated keys (32 characters or more each; never logged) the dispatch desk "
        "signs its rulings, callbacks, reviews of extensions and reopenings with (Kafka header hotline_desk_signature, "
        "HMAC-SHA256); empty: the desk's messages are not authenticated and whoever can write the topics can write "
        "in its name")
    unit_keys_file: str = Field(
        "", description="YAML file (a secret: never logged) of unit code -> keys with which those units sign their "
        "updates (Kafka headers hotline_unit and hotline_unit_signature, HMAC-SHA256); updates in a listed unit's "
        "name must be signed by it, other units' are taken on trust; empty: no unit's updates are authenticated "
        "(make one: hotline unit-keys FILE)")
    sla_clock: Literal["wall", "ticks"] = Field(
        "wall", description="wall: follow the wall clock; ticks: follow times published on the clock topic")
    sla_sweep_seconds: float = Field(5.0, gt=0, description="how often the SLA worker looks for due escalations")
    sla_allowed_lateness_seconds: float = Field(
        30.0, ge=0, description="wall mode: escalations are judged this long after their moment, so late updates count")
    scorecard_seconds: float = Field(60.0, gt=0, description="how often the SLA worker refreshes unit scorecard gauges")
    scorecard_window_days: int = Field(
        90, ge=1, description="scorecards cover tickets opened this many days back (plus every open ticket)")
    max_returns: int = Field(2, ge=1, description="returns (退单) after which a ticket goes to triage as a dispute")
    clock_skew_seconds: float = Field(
        300.0, ge=0, description="an event, update or ruling dated more than this after it was sent (its Kafka "
        "record's timestamp) is dead-lettered as future_timestamp: a sender's clock or time zone is wrong")
    hold_seconds: float = Field(
        900.0, gt=0, description="how long an input naming a ticket not known yet (arrived before its work order) waits "
        "for it before it is dead-lettered (and never before the worker has read the backlog it was held behind)")
    hold_max: int = Field(
        10_000, ge=0, description="inputs a service holds at most; beyond, an early input is dead-lettered at once "
        "(raise it above the largest backlog of updates a catch-up may read ahead of its work orders)")
    fetch_wait_ms: int = Field(
        50, ge=1, description="longest a worker's fetch waits at the broker for new data (Faust's fixed default is 1500)")
    batch_max: int = Field(200, ge=1, description="most messages a worker processes in one database transaction")
    batch_wait_seconds: float = Field(
        0.005, gt=0, description="how long a worker waits to fill a batch (adds at most this much latency per hop; near "
                                 "the workers' capacity a longer wait, such as 0.05, gives bigger batches and less CPU "
                                 "per input: docs/performance.md, section 11)")
    dedup_retention_days: float = Field(
        7.0, gt=0, description="keep processed-input keys and published outbox rows this long (longer than any redelivery)")
    relay_seconds: float = Field(5.0, gt=0, description="how often unpublished outbox rows are re-sent")
    session_timeout_seconds: float = Field(
        10.0, gt=0, description="consumer session timeout: how soon a dead worker's partitions move to another")
    db_pool_size: int = Field(4, ge=1, description="database connections per worker")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="the workers' event loop: uvloop (libuv, less CPU per message) or Python's asyncio")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: Literal["json", "console"] = Field("json", description="json lines (structlog) or console")

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> Settings:
        """Every inconsistency of the Kafka security settings at once, each naming its variables."""
        protocol = self.kafka_security_protocol
        has_user = bool(self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value())
        any_credential = bool(self.kafka_sasl_username or self.kafka_sasl_password.get_secret_value())
        problems = []
        if protocol.startswith("SASL") and not has_user:
            problems.append(f"HOTLINE_KAFKA_SASL_USERNAME and HOTLINE_KAFKA_SASL_PASSWORD are required with "
                            f"HOTLINE_KAFKA_SECURITY_PROTOCOL={protocol}")
        if any_credential and not protocol.startswith("SASL"):
            problems.append(f"HOTLINE_KAFKA_SASL_* credentials are set but HOTLINE_KAFKA_SECURITY_PROTOCOL={protocol} "
                            "does not use SASL (SASL_PLAINTEXT or SASL_SSL)")
        if (self.kafka_ssl_cafile or self.kafka_ssl_certfile) and not protocol.endswith("SSL"):
            problems.append(f"HOTLINE_KAFKA_SSL_* files are set but HOTLINE_KAFKA_SECURITY_PROTOCOL={protocol} does "
                            "not use TLS (SSL or SASL_SSL)")
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            problems.append("HOTLINE_KAFKA_SSL_KEYFILE is set without HOTLINE_KAFKA_SSL_CERTFILE")
        for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                problems.append(f"HOTLINE_{name.upper()}={path}: no such file")
        short = sum(len(key) < MIN_DESK_KEY_LENGTH for key in self.desk_keys)
        if short:
            problems.append(f"HOTLINE_DESK_SIGNING_KEYS: {short} of its keys are shorter than {MIN_DESK_KEY_LENGTH} "
                            "characters (make one with: openssl rand -hex 32)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def desk_keys(self) -> tuple[str, ...]:
        """The dispatch desk's signing keys (``desk_signing_keys``), without blanks."""
        return tuple(k.strip() for k in self.desk_signing_keys.get_secret_value().split(",") if k.strip())


class ConfigurationError(Exception):
    """The environment's HOTLINE_* settings are invalid: ``problems`` names each variable and why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            problems.append(f"HOTLINE_{where.upper()}: {error['msg']}" if where else error["msg"])
        raise ConfigurationError(problems) from None
