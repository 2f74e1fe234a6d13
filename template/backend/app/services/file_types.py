"""What a file is, told from its bytes, and the name it may be stored under.

The name and the type a client declares are the client's to choose, so neither is
believed: an HTML page uploaded as `avatar.png` with `Content-Type: image/png` is still
HTML, and served back it could run script in a browser. Text is judged whole, not by
its start: a browser that sniffs renders markup wherever it finds it, so a file passes
as text/plain only when it holds none.
"""

from __future__ import annotations

import re

# How many leading bytes the detection needs.
SNIFF_BYTES = 512
PLAIN_TEXT = "text/plain"

SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
)
# What an HTML parser reads as markup rather than text: a tag (`<img`), an end tag
# (`</`), a comment or doctype (`<!`), a processing instruction (`<?`). A `<` before
# anything else (`a < b`, `<3`) stays text. `+ADw` is `<` in UTF-7, which older browsers
# decoded when a page named no charset. The tail after the first two bytes only makes
# the quote in an error message readable.
MARKUP = re.compile(rb"<[A-Za-z!?/][A-Za-z0-9:-]{0,15}|\+ADw")
# The most bytes markup needs before the pattern above is certain of it (`+ADw`): a
# scan that keeps this many minus one from the end of a chunk misses none split
# between two chunks.
MARKUP_SPAN = 4
UTF8_BOM = b"\xef\xbb\xbf"


def detect_content_type(head: bytes) -> str:
    """The media type of a file that starts with `head` (at least SNIFF_BYTES of it, or
    the whole file when shorter); application/octet-stream when unknown."""
    for signature, media_type in SIGNATURES:
        if head.startswith(signature):
            return media_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    start = head.removeprefix(UTF8_BOM).lstrip()
    if start[:1] == b"<" and MARKUP.match(start):
        return _markup_type(start.lower())
    if head and _is_text(head):
        return PLAIN_TEXT
    return "application/octet-stream"


def _markup_type(start: bytes) -> str:
    """The type a browser gives a file that starts (after a BOM and white space) with
    markup: SVG and XML by their openings, HTML for any other tag, as browsers sniff."""
    if start.startswith((b"<svg", b"<!doctype svg")):
        return "image/svg+xml"
    if start.startswith(b"<?xml"):
        return "image/svg+xml" if b"<svg" in start else "application/xml"
    return "text/html"


def find_markup(text: bytes) -> str | None:
    """The first markup in `text`, quoted for an error message, or None when there is
    none a browser could render."""
    found = MARKUP.search(text)
    return found.group().decode("ascii") if found else None


# The extensions a stored name may end in, per type, the type's own first; every type
# detect_content_type answers has an entry. The name is what a downloaded file is saved
# as, and its extension decides what opens it: a script named `run.sh` that passed as
# text must be saved as `run.txt`.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
    "image/gif": (".gif",),
    "image/webp": (".webp",),
    "application/pdf": (".pdf",),
    # Office and e-book documents are zip archives inside.
    "application/zip": (".zip", ".docx", ".xlsx", ".pptx", ".odt", ".ods", ".odp", ".epub"),
    "application/gzip": (".gz", ".tgz"),
    PLAIN_TEXT: (".txt", ".text", ".log", ".md", ".csv", ".tsv"),
    "text/html": (".html", ".htm"),
    "image/svg+xml": (".svg",),
    "application/xml": (".xml",),
    "application/octet-stream": (".bin",),
}


def name_for_type(name: str, content_type: str) -> str:
    """`name`, kept when its extension agrees with `content_type`; otherwise its last
    extension gives way to the type's own, and its other dots become underscores so
    that what is left reads as a name, not as more extensions (`x.png.php` holding a
    PNG: `x_png.png`)."""
    extensions = EXTENSIONS[content_type]
    stem, dot, extension = name.rpartition(".")
    if dot and f".{extension.lower()}" in extensions:
        return name
    own = extensions[0]
    stem = (stem if dot else name).replace(".", "_") or "upload"
    return stem[: 255 - len(own)] + own


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The sample may end inside a multi-byte character; only that is forgiven.
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"
    return True
