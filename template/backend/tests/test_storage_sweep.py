"""The storage sweep, on local disk and on S3: what a cut-short upload or delete left is
removed once it is older than the grace, and nothing an upload in progress needs is."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import delete, select

from app.core.clock import utcnow
from app.core.config import Settings
from app.core.storage import KEY_PREFIX, PART_SIZE, ObjectMissingError, Storage
from app.models import File
from app.services.file_service import Sweep, sweep_storage
from app.services.storage_service import LocalStorage
from tests.support import add_user, files_path, organization_of, running_app, token_for, upload

GRACE = timedelta(minutes=10)
PNG_HEADER = b"\x89PNG\r\n\x1a\n"
BOUNDARY = "sweep-boundary"


@asynccontextmanager
async def app_on(
    kind: str, settings: Settings, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[FastAPI, AsyncClient, Storage]]:
    """The app on an empty bucket, or an empty folder: nothing another test stored."""
    overrides: dict[str, Any] = (
        request.getfixturevalue("s3_settings")
        if kind == "s3"
        else {"UPLOAD_DIR": request.getfixturevalue("tmp_path") / "uploads"}
    )
    async with running_app(settings, **overrides) as (app, client):
        storage: Storage = app.state.storage
        assert storage.name == kind
        yield app, client, storage


async def store(storage: Storage, content: bytes) -> str:
    """An object written straight to storage, as an upload whose process then died."""
    key = f"{KEY_PREFIX}{uuid.uuid4()}"
    pending = await storage.start_upload(key, "image/png")
    await pending.write(content)
    await pending.complete()
    return key


async def sweep(app: FastAPI, storage: Storage, *, later: timedelta = timedelta(0)) -> Sweep:
    return await sweep_storage(app.state.sessionmaker, storage, now=utcnow() + later, grace=GRACE)


def exists(storage: Storage, key: str) -> bool:
    try:
        next(storage.read(key), None)
    except ObjectMissingError:
        return False
    return True


@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_what_cut_short_uploads_and_deletes_left_is_removed_after_the_grace(
    kind: str, settings: Settings, request: pytest.FixtureRequest
) -> None:
    async with app_on(kind, settings, request) as (app, client, storage):
        headers = await token_for(app, settings, "keeper@example.com")
        kept = await upload(client, headers, PNG_HEADER + b"kept")
        assert kept.status_code == 201, kept.text
        orphan = await store(storage, PNG_HEADER + b"no row")
        owner = await add_user(app, "gone@example.com")
        organization = await organization_of(app, owner)
        async with app.state.sessionmaker.begin() as session:
            lost = File(
                organization_id=organization,
                owner_id=owner.id,
                object_key=f"{KEY_PREFIX}{uuid.uuid4()}",
                original_name="lost.png",
                content_type="image/png",
                size=4,
                checksum_sha256="0" * 64,
            )
            session.add(lost)
        unfinished = await storage.start_upload(f"{KEY_PREFIX}{uuid.uuid4()}", "image/png")
        await unfinished.write(PNG_HEADER + bytes(PART_SIZE))  # S3 starts a multipart upload
        # On local disk the sweep removes what an upload left unfinished for a day; on S3
        # the bucket's lifecycle rule does.
        abandoned = 1 if kind == "local" else 0

        # Within the grace nothing is touched: it may belong to a request still running.
        assert await sweep(app, storage) == Sweep(0, 0, 0)
        assert exists(storage, orphan)

        # Two days on, the object without a row, the row without an object and the
        # upload never completed are gone; the real file is untouched.
        assert await sweep(app, storage, later=timedelta(days=2)) == Sweep(1, 1, abandoned)
        assert not exists(storage, orphan)
        async with app.state.sessionmaker() as session:
            remaining = (await session.execute(select(File.id, File.object_key))).all()
        assert [str(file_id) for file_id, _ in remaining] == [kept.json()["id"]]
        assert exists(storage, remaining[0].object_key)
        download = await client.get(
            f"{await files_path(client, headers)}/{kept.json()['id']}/download", headers=headers
        )
        assert download.status_code == 200
        assert download.content == PNG_HEADER + b"kept"
        listed = await client.get(f"{await files_path(client, headers)}/{lost.id}", headers=headers)
        assert listed.status_code == 404
        # Nothing is left to do.
        assert await sweep(app, storage, later=timedelta(days=2)) == Sweep(0, 0, 0)
        await unfinished.abort()


def multipart_body(content: bytes) -> tuple[bytes, bytes]:
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="slow.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + content, f"\r\n--{BOUNDARY}--\r\n".encode()


@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_an_upload_in_progress_survives_a_sweep_that_counts_everything_as_old(
    kind: str, settings: Settings, request: pytest.FixtureRequest
) -> None:
    async with app_on(kind, settings, request) as (app, client, storage):
        headers = await token_for(app, settings, "slow@example.com")
        content = PNG_HEADER + bytes(PART_SIZE + 1024)  # more than one S3 part
        first, last = multipart_body(content)
        halfway, resume = asyncio.Event(), asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield first
            halfway.set()
            await resume.wait()
            yield last

        async def sweep_meanwhile() -> Sweep:
            await halfway.wait()
            await asyncio.sleep(0.2)  # the first part is in storage by now
            try:
                # Hours on: the cutoff is past everything that exists, the upload too.
                return await sweep(app, storage, later=timedelta(hours=2))
            finally:
                resume.set()

        response, swept = await asyncio.gather(
            client.post(
                await files_path(client, headers),
                headers={**headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
                content=body(),
            ),
            sweep_meanwhile(),
        )
        assert swept == Sweep(0, 0, 0)
        assert response.status_code == 201, response.text
        download = await client.get(
            f"{await files_path(client, headers)}/{response.json()['id']}/download", headers=headers
        )
        assert download.status_code == 200
        assert download.content == content


async def test_a_sweep_that_sees_another_disk_or_database_removes_nothing(
    settings: Settings, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    async with app_on("local", settings, request) as (app, client, storage):
        headers = await token_for(app, settings, "many@example.com")
        for number in range(12):
            response = await upload(client, headers, PNG_HEADER + bytes([number]))
            assert response.status_code == 201, response.text
        # A worker whose local storage is on a disk of its own sees no objects at all...
        elsewhere = LocalStorage(request.getfixturevalue("tmp_path") / "elsewhere")
        swept = await sweep_storage(
            app.state.sessionmaker, elsewhere, now=utcnow() + timedelta(days=2), grace=GRACE
        )
        assert swept == Sweep(0, 0, 0)
        assert "found 12 files whose object is gone out of 12" in caplog.text
        # ... and one on an empty database sees no files.
        async with app.state.sessionmaker.begin() as session:
            await session.execute(delete(File))
        assert await sweep(app, storage, later=timedelta(days=2)) == Sweep(0, 0, 0)
        assert "found 12 objects no file refers to out of 12" in caplog.text
        assert len(list(storage.objects())) == 12
