from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Control characters (C0 but the tab, DEL, C1) and the Unicode line and paragraph
# separators. Log messages carry what clients send (a login name, a file name); one of
# these in it would let a client end the line and write a forged one after it.
CONTROL_ESCAPES = {
    code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0)) if code != 0x09
} | {0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"}


class EscapingFormatter(logging.Formatter):
    """Writes each record as one line: control characters in the message and its
    arguments come out escaped (`\\n`). The traceback, which `format` appends after
    this line, keeps its own newlines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return super().formatMessage(record).translate(CONTROL_ESCAPES)


def configure_logging(level: str) -> None:
    """Send application logs to stderr in one format; uvicorn keeps its own access log."""
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter(LOG_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.getLogger("app").setLevel(level.upper())
