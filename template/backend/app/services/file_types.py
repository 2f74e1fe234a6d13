"""What a file is, told from its first bytes.

The name and the type a client declares are the client's to choose, so neither is
believed: an HTML page uploaded as `avatar.png` with `Content-Type: image/png` is still
HTML, and served back it could run script in a browser.
"""

from __future__ import annotations

# How many leading bytes the detection needs.
SNIFF_BYTES = 512

SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
)
# Markup that a browser would render, and so run, if it were served inline.
MARKUP_STARTS: tuple[tuple[bytes, str], ...] = (
    (b"<!doctype html", "text/html"),
    (b"<html", "text/html"),
    (b"<head", "text/html"),
    (b"<body", "text/html"),
    (b"<script", "text/html"),
    (b"<iframe", "text/html"),
    (b"<svg", "image/svg+xml"),
    (b"<?xml", "application/xml"),
)
UTF8_BOM = b"\xef\xbb\xbf"


def detect_content_type(head: bytes) -> str:
    """The media type of a file that starts with `head` (at least SNIFF_BYTES of it, or
    the whole file when shorter); application/octet-stream when unknown."""
    for signature, media_type in SIGNATURES:
        if head.startswith(signature):
            return media_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    text = head.removeprefix(UTF8_BOM).lstrip().lower()
    for start, media_type in MARKUP_STARTS:
        if text.startswith(start):
            return media_type
    if head and _is_text(head):
        return "text/plain"
    return "application/octet-stream"


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The sample may end inside a multi-byte character; only that is forgiven.
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"
    return True
