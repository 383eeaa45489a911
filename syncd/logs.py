"""Log output: structlog, JSON lines for machines, a readable console for people.

Configured once per process by the CLI. Tracebacks never show local variables,
which is where a credential could otherwise end up in a log.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from typing import Any, Literal, TextIO

import structlog

from syncd.visible import visible, visible_json, visible_lines

LogFormat = Literal["auto", "json", "console"]


def configure_logging(log_format: LogFormat = "auto", level: int = logging.INFO) -> None:
    use_console = log_format == "console" or (log_format == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor
    if use_console:
        renderer = structlog.dev.ConsoleRenderer(
            exception_formatter=_visible_traceback, sort_keys=False
        )
    else:
        renderer = structlog.processors.JSONRenderer(_visible_json_dumps, sort_keys=False)
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if use_console:
        processors.append(_visible_text)
    else:
        transformer = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        processors.append(structlog.processors.ExceptionRenderer(transformer))
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def _visible_text(
    logger: object, method_name: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """The console prints text values as they are: show their control characters escaped.

    Other values are printed with repr(), which escapes them already; JSON lines
    escape them too.
    """
    return {
        key: visible(value) if isinstance(value, str) else value
        for key, value in event_dict.items()
    }


def _visible_traceback(sio: TextIO, exc_info: structlog.typing.ExcInfo) -> None:
    """A plain traceback, whose messages may quote an answer: its controls escaped."""
    traceback = io.StringIO()
    structlog.dev.plain_traceback(traceback, exc_info)
    sio.write(visible_lines(traceback.getvalue()))


def _visible_json_dumps(event: Any, **options: Any) -> str:
    return visible_json(json.dumps(event, ensure_ascii=False, **options))


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
