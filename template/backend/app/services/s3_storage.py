"""S3-compatible object storage (AWS S3, MinIO, R2, ...), the Storage of
app/services/storage_service.py when STORAGE_BACKEND is s3.

A module of its own, imported only when configured: boto3 weighs about 10 MiB of the
process's memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import boto3
from anyio import to_thread
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.core.config import Settings
from app.core.storage import (
    KEY_PREFIX,
    PART_SIZE,
    READ_CHUNK,
    ObjectMissingError,
    StorageUnavailableError,
    StoredObject,
    Upload,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)


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

    def objects(self) -> Iterator[StoredObject]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=KEY_PREFIX
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield StoredObject(item["Key"], item["LastModified"])
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailableError(str(exc)) from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise StorageUnavailableError(str(exc)) from exc
        except BotoCoreError as exc:
            raise StorageUnavailableError(str(exc)) from exc
        return True

    def abort_stale_uploads(self, started_before: datetime) -> int:
        # The bucket's lifecycle rule (AbortIncompleteMultipartUpload, see the README)
        # removes them: S3 keeps an unfinished upload's parts out of every listing of
        # objects, and some S3-compatible services report no start time to go by.
        return 0
