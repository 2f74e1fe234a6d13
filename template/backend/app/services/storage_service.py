"""Object storage on local disk, and the storage the settings choose (create_storage):
that one, S3 (app/services/s3_storage.py) or none. What a storage does is
app/core/storage.py's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from anyio import to_thread

from app.core.config import Settings, StorageBackend
from app.core.storage import (
    KEY_PREFIX,
    READ_CHUNK,
    ObjectMissingError,
    Storage,
    StorageUnavailableError,
    StoredObject,
    Upload,
)

logger = logging.getLogger(__name__)


PARTIAL = ".partial"


class LocalUpload:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(path.name + PARTIAL)
        self.file: IO[bytes] | None = None

    async def write(self, chunk: bytes) -> None:
        await local_call(self._write, chunk)

    def _write(self, chunk: bytes) -> None:
        if self.file is None:
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            self.file = self.partial.open("wb")
        self.file.write(chunk)

    async def complete(self) -> None:
        await local_call(self._complete)

    def _complete(self) -> None:
        self._write(b"")  # opens the file when the upload was empty
        if self.file is not None:
            self.file.close()
        os.replace(self.partial, self.path)

    async def abort(self) -> None:
        if self.file is not None:
            self.file.close()
        self.partial.unlink(missing_ok=True)


async def local_call(function: Callable[..., object], *args: Any) -> None:
    try:
        await to_thread.run_sync(function, *args)
    except OSError as exc:
        raise StorageUnavailableError(f"{type(exc).__name__}: {exc}") from exc


class LocalStorage:
    """Files under UPLOAD_DIR, for development and single-machine deployments."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        # Keys are made by the app (prefix and UUID), never by a user; the check keeps
        # it that way.
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"object key {key!r} leaves the storage folder")
        return path

    async def start_upload(self, key: str, content_type: str) -> Upload:
        return LocalUpload(self.path(key))

    def read(self, key: str) -> Iterator[bytes]:
        try:
            with self.path(key).open("rb") as file:
                while chunk := file.read(READ_CHUNK):
                    yield chunk
        except FileNotFoundError:
            raise ObjectMissingError(key) from None
        except OSError as exc:
            raise StorageUnavailableError(str(exc)) from exc

    async def delete(self, key: str) -> None:
        await local_call(lambda: self.path(key).unlink(missing_ok=True))

    async def check(self) -> None:
        def writable() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise PermissionError(f"{self.root} is not writable")

        await local_call(writable)

    def _files(self) -> Iterator[tuple[Path, datetime]]:
        # os.walk skips a folder that goes while it is listed, and a file that goes
        # between being listed and looked at is skipped too: the listing never ends
        # early, which would make the files not yet listed look gone.
        for folder, _, names in os.walk(self.root / KEY_PREFIX):
            for name in names:
                path = Path(folder, name)
                try:
                    modified = path.stat().st_mtime
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise StorageUnavailableError(str(exc)) from exc
                yield path, datetime.fromtimestamp(modified, UTC)

    def objects(self) -> Iterator[StoredObject]:
        for path, modified in self._files():
            if not path.name.endswith(PARTIAL):
                yield StoredObject(path.relative_to(self.root).as_posix(), modified)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def abort_stale_uploads(self, started_before: datetime) -> int:
        stale = [
            path
            for path, modified in self._files()
            if path.name.endswith(PARTIAL) and modified < started_before
        ]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)


def create_storage(settings: Settings) -> Storage | None:
    """The configured storage, or None when STORAGE_BACKEND=none."""
    backend = settings.storage_backend
    if backend is StorageBackend.NONE:
        return None
    if backend is StorageBackend.S3 and settings.S3_BUCKET:
        # Imported only here: boto3 costs the process about 10 MiB, for nothing when the
        # files are on local disk.
        from app.services.s3_storage import S3Storage

        return S3Storage(settings, settings.S3_BUCKET)
    return LocalStorage(settings.UPLOAD_DIR)
