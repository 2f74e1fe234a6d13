"""What object storage does, wherever the bytes go: S3-compatible storage
(app/services/s3_storage.py) or a folder on local disk (app/services/storage_service.py).

Uploads are written as they stream in, a part at a time: S3 gets a multipart upload
once a file outgrows one part, so no file is ever held whole in memory. Every storage
failure surfaces as StorageUnavailableError, which the API answers with 503.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from app.core.errors import NotFoundError, ServiceUnavailableError

# S3's smallest part (the last may be smaller), which is also the most an upload buffers
# in memory; 10,000 parts of it allow files of up to 48 GiB.
PART_SIZE = 5 * 1024 * 1024
READ_CHUNK = 1024 * 1024
# Every object lives under this prefix, named by a random UUID.
KEY_PREFIX = "uploads/"


class StorageUnavailableError(ServiceUnavailableError):
    """Storage could not be reached, or refused the operation."""

    public_message = "File storage is unavailable, so nothing was changed; try again soon."


class ObjectMissingError(NotFoundError):
    """The object is not in storage."""

    def __init__(self, key: str) -> None:
        super().__init__("The file's content is gone.", reason=f"no object {key}")


@dataclass(frozen=True)
class StoredObject:
    key: str
    modified: datetime  # aware, UTC


class Upload(Protocol):
    async def write(self, chunk: bytes) -> None: ...
    async def complete(self) -> None: ...
    async def abort(self) -> None: ...


class Storage(Protocol):
    name: str

    async def start_upload(self, key: str, content_type: str) -> Upload: ...
    def read(self, key: str) -> Iterator[bytes]: ...
    async def delete(self, key: str) -> None: ...
    async def check(self) -> None: ...

    # For the sweep, which runs them in a thread: every complete object under KEY_PREFIX
    # (an upload in progress is not one), whether one object is there, and the removal
    # of uploads begun before `started_before` that never completed, with how many
    # there were (on S3 the bucket's lifecycle rule does that).
    def objects(self) -> Iterator[StoredObject]: ...

    def exists(self, key: str) -> bool: ...

    def abort_stale_uploads(self, started_before: datetime) -> int: ...
