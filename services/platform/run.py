"""Starting a Faust worker with our logging."""

from __future__ import annotations

from typing import Any

import faust
import mode.loop
import structlog

from services.platform.settings import Settings


def logging_config(settings: Settings) -> dict[str, Any]:
    pre_chain = [structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
                 structlog.processors.TimeStamper(fmt="iso", utc=True)]
    renderer = (structlog.processors.JSONRenderer(ensure_ascii=False) if settings.log_format == "json"
                else structlog.dev.ConsoleRenderer(colors=False))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": {"()": structlog.stdlib.ProcessorFormatter, "processor": renderer,
                                      "foreign_pre_chain": pre_chain}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["stderr"], "level": settings.log_level.upper()},
        "loggers": {"aiokafka": {"level": "WARNING"}, "faust": {"level": "WARNING"}, "mode": {"level": "WARNING"}},
    }


def run_worker(app: faust.App, settings: Settings) -> None:
    if settings.event_loop == "uvloop":
        mode.loop.use("uvloop")  # the event loop policy, before the worker creates its loop
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), logging_config=logging_config(settings),
                          quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
