"""Uploads to an S3 endpoint: moto's server on loopback, reached over HTTP by boto3."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

import boto3
import pytest
from sqlalchemy import func, select

from app.core.config import Settings
from app.core.storage import PART_SIZE
from app.models import File
from app.services.s3_storage import S3Storage
from tests.support import files_path, running_app, token_for, upload

PNG_HEADER = b"\x89PNG\r\n\x1a\n"


def png(size: int) -> bytes:
    return PNG_HEADER + os.urandom(size - len(PNG_HEADER))


def bucket_client(s3_settings: dict[str, Any]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=s3_settings["S3_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


async def test_an_upload_lands_in_the_bucket_and_downloads_with_the_safety_headers(
    settings: Settings, s3_settings: dict[str, Any]
) -> None:
    content = png(200_000)
    async with running_app(settings, **s3_settings) as (app, client):
        headers = await token_for(app, settings, "ada@example.com")
        response = await upload(client, headers, content)
        assert response.status_code == 201, response.text
        file_id = response.json()["id"]
        file = (
            await client.get(f"{await files_path(client, headers)}/{file_id}", headers=headers)
        ).json()
        assert file["status"] == "ready"
        download = await client.get(
            f"{await files_path(client, headers)}/{file_id}/download", headers=headers
        )
    # Streamed through the API, like a local file, and not a redirect to the bucket: S3
    # cannot send X-Content-Type-Options.
    assert download.status_code == 200
    assert "location" not in download.headers
    assert download.content == content
    assert download.headers["content-type"] == "image/png"
    assert download.headers["content-disposition"].startswith('attachment; filename="picture.png"')
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-security-policy"] == "default-src 'none'; sandbox"
    listing = bucket_client(s3_settings).list_objects_v2(Bucket=s3_settings["S3_BUCKET"])
    assert [item["Size"] for item in listing["Contents"]] == [len(content)]


async def test_a_download_whose_object_is_gone_is_a_404(
    settings: Settings, s3_settings: dict[str, Any]
) -> None:
    async with running_app(settings, **s3_settings) as (app, client):
        headers = await token_for(app, settings, "ada@example.com")
        file_id = (await upload(client, headers, png(1_000))).json()["id"]
        s3 = bucket_client(s3_settings)
        (item,) = s3.list_objects_v2(Bucket=s3_settings["S3_BUCKET"])["Contents"]
        s3.delete_object(Bucket=s3_settings["S3_BUCKET"], Key=item["Key"])
        download = await client.get(
            f"{await files_path(client, headers)}/{file_id}/download", headers=headers
        )
    assert download.status_code == 404
    assert download.json()["error"]["message"] == "The file's content is gone."


async def test_a_download_while_storage_is_unreachable_is_a_503(
    settings: Settings, s3_settings: dict[str, Any]
) -> None:
    async with running_app(settings, **s3_settings) as (app, client):
        headers = await token_for(app, settings, "ada@example.com")
        file_id = (await upload(client, headers, png(1_000))).json()["id"]
        unreachable = settings.model_copy(
            update={**s3_settings, "S3_ENDPOINT_URL": "http://127.0.0.1:1"}
        )
        app.state.storage = S3Storage(unreachable, s3_settings["S3_BUCKET"])
        download = await client.get(
            f"{await files_path(client, headers)}/{file_id}/download", headers=headers
        )
    assert download.status_code == 503
    assert "File storage is unavailable" in download.json()["error"]["message"]
    assert download.headers["Retry-After"] == "30"


async def test_a_large_upload_goes_up_in_parts(
    settings: Settings, s3_settings: dict[str, Any]
) -> None:
    content = png(3 * PART_SIZE + 12345)  # four parts, the last a small one
    async with running_app(settings, MAX_UPLOAD_BYTES=32 * 1024 * 1024, **s3_settings) as (
        app,
        client,
    ):
        headers = await token_for(app, settings, "ada@example.com")
        response = await upload(client, headers, content)
        assert response.status_code == 201, response.text
        assert response.json()["checksum_sha256"] == hashlib.sha256(content).hexdigest()
        file = (
            await client.get(
                f"{await files_path(client, headers)}/{response.json()['id']}", headers=headers
            )
        ).json()
        assert file["status"] == "ready"
        # It comes back in storage's read chunks, whole.
        download = await client.get(
            f"{await files_path(client, headers)}/{file['id']}/download", headers=headers
        )
        assert download.status_code == 200
        assert download.headers["content-length"] == str(len(content))
        assert hashlib.sha256(download.content).hexdigest() == file["checksum_sha256"]
    s3 = bucket_client(s3_settings)
    (item,) = s3.list_objects_v2(Bucket=s3_settings["S3_BUCKET"])["Contents"]
    assert item["Size"] == len(content)
    assert item["ETag"].strip('"').endswith("-4")  # the ETag of a four-part upload


async def test_twenty_parallel_uploads_all_land_intact(
    settings: Settings, s3_settings: dict[str, Any]
) -> None:
    contents = [png(50_000 + 1_000 * number) for number in range(20)]
    async with running_app(settings, **s3_settings) as (app, client):
        headers = await token_for(app, settings, "ada@example.com")
        responses = await asyncio.gather(*[upload(client, headers, c) for c in contents])
        assert [response.status_code for response in responses] == [201] * 20
        for response, content in zip(responses, contents, strict=True):
            file = (
                await client.get(
                    f"{await files_path(client, headers)}/{response.json()['id']}", headers=headers
                )
            ).json()
            assert file["status"] == "ready"
            assert file["checksum_sha256"] == hashlib.sha256(content).hexdigest()
            assert file["size"] == len(content)
    listing = bucket_client(s3_settings).list_objects_v2(Bucket=s3_settings["S3_BUCKET"])
    assert sorted(item["Size"] for item in listing["Contents"]) == sorted(map(len, contents))


async def count_files(app: Any) -> int:
    async with app.state.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(File)) or 0


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"S3_ENDPOINT_URL": "http://127.0.0.1:1"}, "Could not connect"),
        ({"S3_BUCKET": "no-such-bucket-here"}, "404"),
    ],
    ids=["endpoint unreachable", "bucket missing"],
)
async def test_storage_trouble_is_a_503_and_leaves_no_file(
    settings: Settings, s3_settings: dict[str, Any], change: dict[str, str], detail: str
) -> None:
    async with running_app(settings, **{**s3_settings, **change}) as (app, client):
        headers = await token_for(app, settings, "ada@example.com")
        # One file fits in a single request; the other fails in mid-stream, in a part.
        for size in (1_000, PART_SIZE + 1_000):
            response = await upload(client, headers, png(size))
            assert response.status_code == 503
            assert "storage is unavailable" in response.json()["error"]["message"]
        assert await count_files(app) == 0
        ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["failing"] == ["storage"]
    assert detail in ready.json()["checks"]["storage"]["detail"]
