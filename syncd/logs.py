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


def configure_logging(log_format: LogFormat = "auto", *, verbose: bool = True) -> None:
    """JSON lines at info; on a console, info too only when `verbose`, else warnings up.

    An apply on a terminal shows its own human lines on stdout: its log there says
    only what went wrong, unless the person asks for more (--verbose).
    """
    use_console = log_format == "console" or (log_format == "auto" and sys.stderr.isatty())
    level = logging.INFO if verbose or not use_console else logging.WARNING
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if use_console:
        processors += [
            _human_values,
            structlog.dev.ConsoleRenderer(exception_formatter=_visible_traceback, sort_keys=False),
        ]
    else:
        transformer = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        processors += [
            _only_with_exception(structlog.processors.ExceptionRenderer(transformer)),
            structlog.processors.JSONRenderer(_visible_json_dumps, sort_keys=False),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def _only_with_exception(renderer: structlog.typing.Processor) -> structlog.typing.Processor:
    """`renderer` for the events that carry an exception (`exc_info`), and no others.

    An apply logs two events per write, none with an exception: the renderer's
    own checks were a sixth of each line's cost.
    """

    def render(
        logger: object, method_name: str, event_dict: structlog.typing.EventDict
    ) -> structlog.typing.ProcessorReturnValue:
        if "exc_info" not in event_dict:
            return event_dict
        return renderer(logger, method_name, event_dict)

    return render


def _human_values(
    logger: object, method_name: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Values as a person reads them: no Python reprs (`None`, `{'files': …}`) on a console.

    A value that is None is left out; a list or a mapping is shown as JSON; text
    is printed as it is, so its control characters are shown escaped. (JSON
    lines escape them too.)
    """
    shown: structlog.typing.EventDict = {}
    for key, value in event_dict.items():
        if value is None:
            continue
        if isinstance(value, dict | list | tuple) and key != "exc_info":
            shown[key] = _visible_json_dumps(value, default=str)
        else:
            shown[key] = visible(value) if isinstance(value, str) else value
    return shown


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
