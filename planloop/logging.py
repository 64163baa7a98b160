"""structlog configuration shared by every planloop process.

Everything, including stdlib loggers of libraries (temporalio, asyncpg), goes through one stderr handler, so a
log line has one shape: readable console output for a person at a terminal, JSON lines for machines. Ids bound
with `bind_contextvars` (plan, workflow, run, request) appear on every line logged in that context.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, clear_contextvars, unbind_contextvars

__all__ = [
    "bind_contextvars",
    "bound_contextvars",
    "clear_contextvars",
    "configure_logging",
    "get_logger",
    "unbind_contextvars",
]

# Chatty at INFO (every poll, every connection); their warnings are what an operator needs.
QUIET_LIBRARIES = ("temporalio", "asyncpg")

# temporalio's workflow and activity loggers put their context in these `extra` keys, as dicts.
_TEMPORAL_EXTRAS = ("temporal_workflow", "temporal_activity", "temporal_update")
_TEMPORAL_KEYS = (
    "workflow_id",
    "run_id",
    "activity_type",
    "activity_id",
    "attempt",
    "update_id",
    "update_name",
)


def _flatten_temporal(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Lift workflow, run, activity and update ids out of temporalio's nested extras, so that every line
    about a plan carries the same flat keys whether it came from a workflow, an activity or planloop."""
    for key in _TEMPORAL_EXTRAS:
        nested = event.pop(key, None)
        if isinstance(nested, dict):
            for name in _TEMPORAL_KEYS:
                if name in nested:
                    event.setdefault(name, nested[name])
    return event


def _renderer(log_format: str, stream: IO[str]) -> tuple[list[Any], Any]:
    use_console = log_format == "console" or (log_format == "auto" and _isatty(stream))
    if use_console:
        # Locals in tracebacks could print a DSN's password.
        formatter = structlog.dev.RichTracebackFormatter(show_locals=False)
        return [], structlog.dev.ConsoleRenderer(colors=_isatty(stream), exception_formatter=formatter)
    return [structlog.processors.dict_tracebacks], structlog.processors.JSONRenderer()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def configure_logging(
    log_format: str = "auto", log_level: str = "INFO", stream: IO[str] | None = None
) -> None:
    """Route structlog and stdlib logging to `stream` (stderr by default) in the chosen format.

    Safe to call again (tests do): the root handler is replaced, not added to.
    """
    stream = stream if stream is not None else sys.stderr
    level = logging.getLevelNamesMapping()[log_level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    final, renderer = _renderer(log_format, stream)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _flatten_temporal],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    logging.captureWarnings(True)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
