"""structlog JSON logs. Personal data never goes in: callers' names and phones are not passed to loggers,
and a processor masks digit runs and drops ``caller`` keys as a second line of defence."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from services.domain.privacy import PII_KEYS, mask_text


def _scrub(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if key in PII_KEYS:
            event[key] = "[redacted]"
        elif isinstance(event[key], str):
            event[key] = mask_text(event[key])
    return event


def configure(level: str = "INFO", fmt: str = "json", service: str | None = None) -> None:
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _scrub,
    ]
    renderer = structlog.processors.JSONRenderer(ensure_ascii=False) if fmt == "json" else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*processors, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    if service:
        structlog.contextvars.bind_contextvars(service=service)
    # Faust and aiokafka log through the standard library; keep them, as JSON lines too.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processor=renderer, foreign_pre_chain=processors))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
