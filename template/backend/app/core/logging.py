"""Logs: one line per record, JSON in production and readable text in development.

Every record goes through the standard library's logging, whoever writes it (the app's
`logging.getLogger(__name__)` loggers, uvicorn, RQ, SQLAlchemy), and structlog renders
it with the same fields: time, level, logger, message, and where known the request id,
the user id or API key id and the route (app/core/request_context.py), or the job that
is running (bound by the worker). Fields passed as `extra={...}` become fields too.

Log messages carry what clients send (a path): JSON escapes every control character, and
the text format writes the message and every text field as quoted literals, so neither a
line nor a field can be started by a client.
"""

from __future__ import annotations

import logging
import sys
import textwrap
import traceback
from collections.abc import Mapping
from contextvars import Token
from typing import Any, TextIO

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, ExcInfo, Processor

from app.core.request_context import current_request

# Control characters (C0 but the tab, DEL, C1) and the Unicode line and paragraph
# separators, as the text format writes them.
CONTROL_ESCAPES = {
    code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0)) if code != 0x09
} | {0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"}

# In a traceback, which keeps its lines, every line is indented instead.
CONTROL_ESCAPES_BUT_NEWLINE = {
    code: escape for code, escape in CONTROL_ESCAPES.items() if code != 0x0A
}

# Loggers of the server that would otherwise keep handlers and formats of their own.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "rq.worker", "rq.job")


def add_request_fields(_: Any, __: str, event: EventDict) -> EventDict:
    """The current request's id, caller and route, on every record written while it runs."""
    request = current_request()
    if request is not None:
        event.setdefault("request_id", request.request_id)
        for name, value in (
            ("user_id", request.user_id),
            ("api_key_id", request.api_key_id),
            ("route", request.route),
        ):
            if value is not None:
                event.setdefault(name, value)
    return event


def add_trace_ids(_: Any, __: str, event: EventDict) -> EventDict:
    """The current span's trace and span ids, while tracing records one, so that a line
    leads to its trace."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


def drop_server_extras(_: Any, __: str, event: EventDict) -> EventDict:
    """uvicorn's copy of its message with terminal colours: the message says it already."""
    event.pop("color_message", None)
    return event


def quote_message(_: Any, __: str, event: EventDict) -> EventDict:
    """The message as a quoted literal (text format), like every text field after it: what
    a client put in it (a path) can neither end the line nor pass for a field, and
    control, bidirectional and zero-width characters show as escapes."""
    event["event"] = repr(str(event.get("event", "")))
    return event


# The fields every line starts with, in this order; the others follow as they came.
LEADING_FIELDS = ("timestamp", "level", "logger", "message")


def leading_fields_first(_: Any, __: str, event: EventDict) -> EventDict:
    ordered = {name: event[name] for name in LEADING_FIELDS if name in event}
    ordered.update(event)
    return ordered


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        add_request_fields,
        add_trace_ids,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        drop_server_extras,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _renderers(json_lines: bool) -> list[Processor]:
    if json_lines:
        return [
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            leading_fields_first,
            # ensure_ascii (json's default) escapes every control character and U+2028.
            structlog.processors.JSONRenderer(),
        ]
    return [
        quote_message,
        # Text values are quoted too (with their escapes), each a field of its own.
        structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(),
            repr_native_str=True,
            exception_formatter=indented_traceback,
        ),
    ]


def indented_traceback(out: TextIO, exc_info: ExcInfo) -> None:
    """The traceback below its record's line, every line of it indented: a newline in an
    exception's message cannot start what looks like a record of its own."""
    text = "".join(traceback.format_exception(*exc_info)).rstrip("\n")
    out.write(
        "\n" + textwrap.indent(text.translate(CONTROL_ESCAPES_BUT_NEWLINE), "    ", lambda _: True)
    )


def formatter(json_lines: bool) -> logging.Formatter:
    """The formatter every handler of the process uses."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *_renderers(json_lines),
        ],
    )


class _StderrHandler(logging.StreamHandler[TextIO]):
    """The handler configure_logging installs: one per process, however often it runs."""


def configure_logging(level: str, json_lines: bool) -> None:
    """Route every logger of the process to one stderr handler with one format."""
    handler = _StderrHandler()
    handler.setFormatter(formatter(json_lines))
    root = logging.getLogger()
    for existing in root.handlers[:]:
        if isinstance(existing, _StderrHandler):
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("app", *SERVER_LOGGERS):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(level.upper())
    # The app writes its own access line (app/core/request_context.py), with the route
    # and the request id and without the query string, which may carry a token.
    logging.getLogger("uvicorn.access").disabled = True
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def bind_job(**fields: Any) -> Mapping[str, Token[Any]]:
    """Bind `fields` to every record the current context writes (a job's id and the
    request it came from), until `unbind_job` is given what this returns."""
    return structlog.contextvars.bind_contextvars(**fields)


def unbind_job(tokens: Mapping[str, Token[Any]]) -> None:
    structlog.contextvars.reset_contextvars(**tokens)
