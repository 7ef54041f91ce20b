"""structlog JSON logs. Personal data never goes in: callers' names and phones are not passed to loggers, and as
a second line of defence a processor masks phone and ID numbers in every string (exception text included) and
redacts the values of PII keys (``caller``, ``phone``...) at any depth."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from services.domain.privacy import PII_KEYS, mask_text


def _scrubbed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "[redacted]" if k in PII_KEYS else _scrubbed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v) for v in value]
    return mask_text(value) if isinstance(value, str) else value


def _scrub(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Runs after ``format_exc_info``, so the formatted exception is a string it masks."""
    return _scrubbed(event)


def configure(level: str = "INFO", fmt: str = "json", service: str | None = None) -> None:
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _scrub,
    ]
    renderer = structlog.processors.JSONRenderer(ensure_ascii=False) if fmt == "json" else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    if service:
        structlog.contextvars.bind_contextvars(service=service)
    # Faust and aiokafka log through the standard library; keep them, as JSON lines too, scrubbed the same way.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processor=renderer, foreign_pre_chain=processors))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
