"""Uploads to an S3 endpoint: moto's server on loopback, reached over HTTP by boto3."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

import boto3
import httpx
import pytest
from sqlalchemy import func, select

from app.core.config import Settings
from app.models import File
from app.services.storage_service import PART_SIZE
from tests.support import running_app, token_for

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


async def upload(client: httpx.AsyncClient, headers: dict[str, str], content: bytes) -> Any:
    return await client.post(
        "/api/v1/files", headers=headers, files={"file": ("photo.png", content, "image/png")}
    )


async def test_an_upload_lands_in_the_bucket_and_downloads_by_presigned_url(
    settings: Settings, s3_settings: dict[str, Any]
) -> None:
    content = png(200_000)
    async with running_app(settings, **s3_settings) as (app, client):
        headers = await token_for(app, settings, "ada@example.com")
        response = await upload(client, headers, content)
        assert response.status_code == 201, response.text
        file_id = response.json()["id"]
        file = (await client.get(f"/api/v1/files/{file_id}", headers=headers)).json()
        assert file["status"] == "ready"
        download = await client.get(f"/api/v1/files/{file_id}/download", headers=headers)
        assert download.status_code == 307
        location = download.headers["location"]
        assert location.startswith(
            f"{s3_settings['S3_ENDPOINT_URL']}/{s3_settings['S3_BUCKET']}/uploads/"
        )
        assert "X-Amz-Expires=300" in location
    async with httpx.AsyncClient() as outside:
        fetched = await outside.get(location)
    assert fetched.status_code == 200
    assert fetched.content == content
    listing = bucket_client(s3_settings).list_objects_v2(Bucket=s3_settings["S3_BUCKET"])
    assert [item["Size"] for item in listing["Contents"]] == [len(content)]


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
        file = (await client.get(f"/api/v1/files/{response.json()['id']}", headers=headers)).json()
        assert file["status"] == "ready"
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
                await client.get(f"/api/v1/files/{response.json()['id']}", headers=headers)
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
