"""Receiving an upload: a multipart body read as it arrives, straight into storage.

The size limit is counted on the bytes actually received, so a chunked body without a
Content-Length is held to it too. The file's type is decided from its first bytes
before anything is stored; text is then read for markup to its last byte, and the
upload is undone if any turns up.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.core.errors import AppError
from app.core.storage import KEY_PREFIX, Storage, Upload
from app.services.file_types import (
    MARKUP_SPAN,
    PLAIN_TEXT,
    SNIFF_BYTES,
    detect_content_type,
    find_markup,
    name_for_type,
)

FILE_FIELD = "file"
# Room for the multipart framing and small form fields around the file.
ENVELOPE_BYTES = 64 * 1024


class UploadError(AppError):
    """The upload is refused; `status_code` and the message say why."""


class UploadTooLargeError(UploadError):
    """The file is larger than MAX_UPLOAD_BYTES."""

    status_code = 413


class UnsupportedFileTypeError(UploadError):
    """Not multipart, or the file's content is not an accepted type."""

    status_code = 415


class MalformedUploadError(UploadError):
    """The multipart body is malformed or has no file field."""

    status_code = 422


@dataclass(frozen=True)
class StoredUpload:
    object_key: str
    original_name: str
    content_type: str
    size: int
    checksum_sha256: str


def human_size(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def too_large(limit: int) -> UploadTooLargeError:
    return UploadTooLargeError(
        f"The file is larger than the limit of {human_size(limit)} (MAX_UPLOAD_BYTES)."
    )


def multipart_boundary(content_type: str | None) -> bytes:
    media_type, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise UnsupportedFileTypeError(
            f"Send the file as multipart/form-data, in a field named {FILE_FIELD!r}."
        )
    return boundary


def check_declared_length(content_length: str | None, limit: int) -> None:
    """Refuse at once a body that announces itself as too large."""
    if content_length and content_length.isdigit() and int(content_length) > limit + ENVELOPE_BYTES:
        raise too_large(limit)


def safe_filename(raw: str) -> str:
    """The last path component of a client's filename, without control characters."""
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(char for char in name if unicodedata.category(char)[0] != "C")
    name = re.sub(r"\s+", " ", name).strip(" .")
    return name[:255] or "upload"


class _TextCheck:
    """Refuses text that holds markup, read a chunk at a time as it streams. The end of
    each chunk is read again with the next, so markup split between two is found too."""

    def __init__(self) -> None:
        self.tail = b""

    def feed(self, chunk: bytes) -> None:
        window = self.tail + chunk
        markup = find_markup(window)
        if markup is not None:
            raise UnsupportedFileTypeError(
                f"The text contains markup (`{markup}`), which browsers may run; text is "
                "accepted only when no `<` is followed by a letter, `!`, `?` or `/` "
                "(nor `+ADw`, a `<` in UTF-7)."
            )
        self.tail = window[-(MARKUP_SPAN - 1) :]


@dataclass
class _Part:
    name: str | None = None
    filename: str | None = None


class _Events:
    """Collects what the callback-driven parser finds, for the async code to act on."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes | _Part | None]] = []
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.part = _Part()

    def on_part_begin(self) -> None:
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.header_field.lower() == b"content-disposition":
            _, options = parse_options_header(bytes(self.header_value))
            name, filename = options.get(b"name"), options.get(b"filename")
            self.part.name = name.decode("utf-8", "replace") if name is not None else None
            if filename is not None:
                self.part.filename = filename.decode("utf-8", "replace")
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        self.items.append(("start", self.part))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self.items.append(("data", data[start:end]))

    def on_part_end(self) -> None:
        self.items.append(("end", None))


class _Receiver:
    """Acts on the parser's events for the `file` field: holds its first bytes until the
    type is known and accepted, then streams the rest into storage (text through a
    check for markup on the way)."""

    def __init__(self, storage: Storage, limit: int, allowed_types: list[str]) -> None:
        self.storage = storage
        self.limit = limit
        self.allowed_types = allowed_types
        self.key = f"{KEY_PREFIX}{uuid.uuid4().hex}"
        self.in_file = False
        self.done = False
        self.name = ""
        self.head = bytearray()  # the first bytes, held until the type is known
        self.upload: Upload | None = None
        self.content_type = ""
        self.text_check: _TextCheck | None = None
        self.size = 0
        self.digest = hashlib.sha256()

    def start(self, part: _Part) -> None:
        self.in_file = part.name == FILE_FIELD and part.filename is not None and not self.done
        if self.in_file:
            self.name = safe_filename(part.filename or "")

    async def data(self, chunk: bytes) -> None:
        if not self.in_file:
            return
        self.size += len(chunk)
        if self.size > self.limit:
            raise too_large(self.limit)
        self.digest.update(chunk)
        if self.upload is None:
            self.head += chunk
            if len(self.head) >= SNIFF_BYTES:
                await self._open()
        else:
            if self.text_check is not None:
                self.text_check.feed(chunk)
            await self.upload.write(chunk)

    async def _open(self) -> None:
        self.content_type = detect_content_type(bytes(self.head[:SNIFF_BYTES]))
        if self.content_type not in self.allowed_types:
            raise UnsupportedFileTypeError(
                f"The file's content is {self.content_type}, which is not accepted here; "
                f"accepted: {', '.join(self.allowed_types)}."
            )
        if self.content_type == PLAIN_TEXT:
            self.text_check = _TextCheck()
            self.text_check.feed(bytes(self.head))
        self.upload = await self.storage.start_upload(self.key, self.content_type)
        await self.upload.write(bytes(self.head))
        self.head.clear()

    async def end(self) -> None:
        if not self.in_file:
            return
        if self.upload is None:
            await self._open()
        if self.upload is not None:
            await self.upload.complete()
        self.in_file, self.done = False, True

    async def abort(self) -> None:
        if self.done:
            await self.storage.delete(self.key)
        elif self.upload is not None:
            await self.upload.abort()


async def receive_upload(
    body: AsyncIterator[bytes],
    boundary: bytes,
    storage: Storage,
    *,
    limit: int,
    allowed_types: list[str],
) -> StoredUpload:
    """Stream the `file` field of a multipart body into storage, or raise UploadError
    (or StorageUnavailableError) with nothing left behind in storage."""
    events = _Events()
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": events.on_part_begin,
            "on_header_field": events.on_header_field,
            "on_header_value": events.on_header_value,
            "on_header_end": events.on_header_end,
            "on_headers_finished": events.on_headers_finished,
            "on_part_data": events.on_part_data,
            "on_part_end": events.on_part_end,
        },
    )
    receiver = _Receiver(storage, limit, allowed_types)
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > limit + ENVELOPE_BYTES:
                raise too_large(limit)
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise MalformedUploadError(f"The multipart body is malformed: {exc}") from None
            for kind, value in events.items:
                if kind == "start" and isinstance(value, _Part):
                    receiver.start(value)
                elif kind == "data" and isinstance(value, bytes):
                    await receiver.data(value)
                elif kind == "end":
                    await receiver.end()
            events.items.clear()
        parser.finalize()
    except BaseException:
        await receiver.abort()
        raise
    if not receiver.done:
        raise MalformedUploadError(
            f"The body has no complete file in a field named {FILE_FIELD!r} "
            "(a form field with a filename)."
        )
    return StoredUpload(
        object_key=receiver.key,
        original_name=name_for_type(receiver.name, receiver.content_type),
        content_type=receiver.content_type,
        size=receiver.size,
        checksum_sha256=receiver.digest.hexdigest(),
    )
