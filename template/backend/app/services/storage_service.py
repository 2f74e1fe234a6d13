"""Object storage: S3-compatible (AWS S3, MinIO, R2, ...) or a folder on local disk.

Uploads are written as they stream in, a part at a time: S3 gets a multipart upload
once a file outgrows one part, so no file is ever held whole in memory. Every storage
failure surfaces as StorageUnavailableError, which the API answers with 503.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import boto3
from anyio import to_thread
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.core.config import Settings, StorageBackend
from app.core.errors import NotFoundError, ServiceUnavailableError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

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


class S3Upload:
    def __init__(self, client: S3Client, bucket: str, key: str, content_type: str) -> None:
        self.client, self.bucket, self.key, self.content_type = client, bucket, key, content_type
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    async def write(self, chunk: bytes) -> None:
        self.buffer += chunk
        while len(self.buffer) >= PART_SIZE:
            part = bytes(memoryview(self.buffer)[:PART_SIZE])
            del self.buffer[:PART_SIZE]
            await s3_call(self._upload_part, part)

    def _upload_part(self, body: bytes) -> None:
        if self.upload_id is None:
            created = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type
            )
            self.upload_id = created["UploadId"]
        number = len(self.parts) + 1
        answer = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body
        )
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def complete(self) -> None:
        await s3_call(self._complete)

    def _complete(self) -> None:
        if self.upload_id is None:
            # Small enough for one request.
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=bytes(self.buffer),
                ContentType=self.content_type,
            )
            return
        if self.buffer:
            self._upload_part(bytes(self.buffer))
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},  # type: ignore[typeddict-item]
        )

    async def abort(self) -> None:
        self.buffer.clear()
        if self.upload_id is None:
            return
        upload_id = self.upload_id
        try:
            await s3_call(
                lambda: self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=upload_id
                )
            )
        except StorageUnavailableError:
            # The bucket's lifecycle rule for incomplete uploads cleans up what is left.
            logger.warning("Could not abort the multipart upload of %s", self.key)


async def s3_call(function: Callable[..., object], *args: Any) -> None:
    try:
        await to_thread.run_sync(function, *args)
    except (BotoCoreError, ClientError) as exc:
        raise StorageUnavailableError(str(exc)) from exc


class S3Storage:
    name = "s3"

    def __init__(self, settings: Settings, bucket: str) -> None:
        self.bucket = bucket
        secret = settings.S3_SECRET_ACCESS_KEY
        config = Config(
            connect_timeout=3,
            read_timeout=30,
            retries={"max_attempts": 2, "mode": "standard"},
            s3={"addressing_style": "path" if settings.S3_FORCE_PATH_STYLE else "auto"},
            signature_version="s3v4",
        )
        # With the keys unset, boto3 finds credentials the usual way (environment,
        # instance role, ~/.aws).
        self.client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.S3_ENDPOINT_URL,
            region_name=settings.S3_REGION,
            aws_access_key_id=settings.S3_ACCESS_KEY_ID,
            aws_secret_access_key=secret.get_secret_value() if secret else None,
            config=config,
        )

    async def start_upload(self, key: str, content_type: str) -> Upload:
        return S3Upload(self.client, self.bucket, key, content_type)

    def read(self, key: str) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            yield from body.iter_chunks(READ_CHUNK)
        except self.client.exceptions.NoSuchKey:
            raise ObjectMissingError(key) from None
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailableError(str(exc)) from exc

    async def delete(self, key: str) -> None:
        await s3_call(lambda: self.client.delete_object(Bucket=self.bucket, Key=key))

    async def check(self) -> None:
        await s3_call(lambda: self.client.head_bucket(Bucket=self.bucket))


class LocalUpload:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
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


def create_storage(settings: Settings) -> Storage | None:
    """The configured storage, or None when STORAGE_BACKEND=none."""
    backend = settings.storage_backend
    if backend is StorageBackend.NONE:
        return None
    if backend is StorageBackend.S3 and settings.S3_BUCKET:
        return S3Storage(settings, settings.S3_BUCKET)
    return LocalStorage(settings.UPLOAD_DIR)
