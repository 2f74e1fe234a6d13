"""Uploads on the embedded defaults: local storage, jobs run after the response."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.core.config import Settings, StorageBackend
from app.core.rbac import Role
from app.main import create_app
from app.models import User
from app.services.upload_service import safe_filename
from tests.support import (
    access_token,
    add_user,
    bearer,
    files_path,
    stored_files,
    token_for,
    upload,
)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
HTML = b"<!DOCTYPE html><html><script>alert(document.cookie)</script></html>"


async def test_an_upload_is_stored_processed_and_downloaded(
    client: AsyncClient, ada: dict[str, str]
) -> None:
    response = await upload(client, ada, PNG)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["content_type"] == "image/png"
    assert created["size"] == len(PNG)
    assert created["checksum_sha256"] == hashlib.sha256(PNG).hexdigest()
    # Without Redis the job ran after the response, in the API process.
    file = (
        await client.get(f"{await files_path(client, ada)}/{created['id']}", headers=ada)
    ).json()
    assert file["status"] == "ready"
    assert file["processed_at"] is not None
    download = await client.get(
        f"{await files_path(client, ada)}/{created['id']}/download", headers=ada
    )
    assert download.status_code == 200
    assert download.content == PNG
    assert download.headers["content-type"] == "image/png"
    assert download.headers["content-disposition"].startswith('attachment; filename="picture.png"')
    assert download.headers["content-length"] == str(len(PNG))
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert download.headers["cache-control"] == "no-store"


async def test_a_download_whose_object_is_gone_is_a_404(
    client: AsyncClient, ada: dict[str, str], settings: Settings
) -> None:
    before = stored_files(settings)
    file_id = (await upload(client, ada, PNG)).json()["id"]
    (stored,) = stored_files(settings) - before
    stored.unlink()
    download = await client.get(f"{await files_path(client, ada)}/{file_id}/download", headers=ada)
    assert download.status_code == 404
    assert download.json()["error"]["message"] == "The file's content is gone."


async def test_a_download_holds_no_database_connection_while_it_streams(
    app: FastAPI, client: AsyncClient, ada: dict[str, str]
) -> None:
    file_id = (await upload(client, ada, PNG)).json()["id"]
    storage = app.state.storage
    read = storage.read
    connections_in_use: list[int] = []

    def watched_read(key: str) -> Iterator[bytes]:
        for chunk in read(key):
            connections_in_use.append(app.state.engine.pool.checkedout())
            yield chunk

    storage.read = watched_read
    download = await client.get(f"{await files_path(client, ada)}/{file_id}/download", headers=ada)
    assert download.content == PNG
    assert connections_in_use == [0]


async def test_a_large_download_streams_back_whole(
    client: AsyncClient, ada: dict[str, str], settings: Settings
) -> None:
    # Several of storage's read chunks, the last a short one.
    content = PNG + bytes(range(256)) * (3 * 4096 + 7)
    file_id = (await upload(client, ada, content)).json()["id"]
    download = await client.get(f"{await files_path(client, ada)}/{file_id}/download", headers=ada)
    assert download.status_code == 200
    assert download.headers["content-length"] == str(len(content))
    assert download.content == content


async def test_the_limit_is_exact(
    client: AsyncClient, ada: dict[str, str], settings: Settings
) -> None:
    limit = settings.MAX_UPLOAD_BYTES
    at_limit = PNG + b"\0" * (limit - len(PNG))
    assert (await upload(client, ada, at_limit)).status_code == 201
    over = await upload(client, ada, at_limit + b"\0")
    assert over.status_code == 413
    assert "limit of 10 MiB (MAX_UPLOAD_BYTES)" in over.json()["error"]["message"]


async def chunked(content: bytes, boundary: str) -> AsyncIterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    for start in range(0, len(content), 64 * 1024):
        yield content[start : start + 64 * 1024]
    yield f"\r\n--{boundary}--\r\n".encode()


async def test_a_chunked_body_without_length_is_held_to_the_limit(
    client: AsyncClient, ada: dict[str, str], settings: Settings
) -> None:
    boundary = "limit-test-boundary"
    content = PNG + b"\0" * settings.MAX_UPLOAD_BYTES
    response = await client.post(
        await files_path(client, ada),
        headers={**ada, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        content=chunked(content, boundary),
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    files = (await client.get(await files_path(client, ada), headers=ada)).json()
    assert files["total"] == 0


async def test_a_declared_oversize_body_is_refused_before_it_is_read(
    client: AsyncClient, ada: dict[str, str], settings: Settings
) -> None:
    response = await client.post(
        await files_path(client, ada),
        headers={
            **ada,
            "Content-Type": "multipart/form-data; boundary=x",
            "Content-Length": str(settings.MAX_UPLOAD_BYTES * 2),
        },
        content=b"",
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("content", "detected"),
    [
        (HTML, "text/html"),
        (b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>", "image/svg+xml"),
        (b"MZ\x90\x00" + bytes(600), "application/octet-stream"),
    ],
)
async def test_the_type_comes_from_the_content_not_the_name_or_header(
    client: AsyncClient, ada: dict[str, str], content: bytes, detected: str
) -> None:
    response = await upload(client, ada, content, name="avatar.png", declared="image/png")
    assert response.status_code == 415
    assert f"content is {detected}" in response.json()["error"]["message"]


async def test_text_is_recognised_whatever_it_is_called(
    client: AsyncClient, ada: dict[str, str]
) -> None:
    response = await upload(client, ada, "naïve café notes\n".encode(), name="x.bin", declared="")
    assert response.status_code == 201
    assert response.json()["content_type"] == "text/plain"
    assert response.json()["original_name"] == "x.txt"


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("../../etc/passwd", "passwd.png"),
        ("..\\..\\windows\\system.ini", "system.png"),
        ("C:\\Users\\ada\\report.png", "report.png"),
        ("   ", "upload.png"),
    ],
)
async def test_path_traversal_in_the_filename_goes_nowhere(
    client: AsyncClient, ada: dict[str, str], settings: Settings, name: str, kept: str
) -> None:
    response = await upload(client, ada, PNG, name=name)
    assert response.status_code == 201, response.text
    assert response.json()["original_name"] == kept
    stored = stored_files(settings)
    assert all(path.is_relative_to(settings.UPLOAD_DIR) for path in stored)
    assert all(kept not in path.name for path in stored)  # the object is named by a UUID


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/json", b'{"file": "x"}', 415),
        ("multipart/form-data", b"", 415),  # no boundary
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n--b--\r\n',
            422,
        ),
    ],
)
async def test_a_body_without_a_file_says_what_to_send(
    client: AsyncClient, ada: dict[str, str], content_type: str, body: bytes, status: int
) -> None:
    response = await client.post(
        await files_path(client, ada),
        headers={**ada, "Content-Type": content_type},
        content=body,
    )
    assert response.status_code == status
    assert "'file'" in response.json()["error"]["message"]


async def test_uploading_needs_a_verified_address(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    headers = await token_for(app, settings, "new@example.com", verified=False)
    assert (await upload(client, headers, PNG)).status_code == 403


async def test_another_organizations_files_do_not_exist(
    app: FastAPI, client: AsyncClient, settings: Settings, ada: dict[str, str]
) -> None:
    ada_files = await files_path(client, ada)
    file_id = (await upload(client, ada, PNG)).json()["id"]
    bob = await token_for(app, settings, "bob@example.com")
    bob_files = await files_path(client, bob)
    # A platform owner manages accounts, not the data of organizations it is not in.
    platform_owner = await token_for(app, settings, "root@example.com", role=Role.OWNER)
    for headers in (bob, platform_owner):
        for method, path in [
            ("GET", f"{ada_files}/{file_id}"),
            ("GET", f"{ada_files}/{file_id}/download"),
            ("DELETE", f"{ada_files}/{file_id}"),
            ("GET", ada_files),
            ("GET", f"{await files_path(client, headers)}/{file_id}"),
            ("DELETE", f"{await files_path(client, headers)}/{file_id}"),
        ]:
            response = await client.request(method, path, headers=headers)
            assert response.status_code == 404, (method, path, response.text)
    assert (await client.get(bob_files, headers=bob)).json()["total"] == 0
    assert (await client.get(f"{ada_files}/{file_id}", headers=ada)).status_code == 200


async def test_deleting_a_file_removes_the_object(
    client: AsyncClient, ada: dict[str, str], settings: Settings
) -> None:
    file_id = (await upload(client, ada, PNG)).json()["id"]
    before = stored_files(settings)
    assert before
    response = await client.delete(f"{await files_path(client, ada)}/{file_id}", headers=ada)
    assert response.status_code == 204
    after = stored_files(settings)
    assert len(before - after) == 1
    assert (
        await client.get(f"{await files_path(client, ada)}/{file_id}", headers=ada)
    ).status_code == 404


async def test_the_file_list_pages_newest_first(client: AsyncClient, ada: dict[str, str]) -> None:
    ids = [(await upload(client, ada, PNG, name=f"{n}.png")).json()["id"] for n in range(3)]
    first = (await client.get(f"{await files_path(client, ada)}?limit=2", headers=ada)).json()
    second = (
        await client.get(f"{await files_path(client, ada)}?limit=2&offset=2", headers=ada)
    ).json()
    assert first["total"] == second["total"] == 3
    assert [item["id"] for item in first["items"] + second["items"]] == ids[::-1]


async def test_with_storage_turned_off_uploads_get_a_clear_503(
    settings: Settings, tmp_path: Any
) -> None:
    app = create_app(settings.model_copy(update={"STORAGE_BACKEND": StorageBackend.NONE}))
    async with app.router.lifespan_context(app):
        user: User = await add_user(app, "ada@example.com")
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            headers = bearer(await access_token(app, settings, user.id))
            response = await upload(client, headers, PNG)
            ready = await client.get("/health/ready")
        async with app.state.sessionmaker.begin() as session:
            await session.delete(await session.get(User, user.id))
    assert response.status_code == 503
    assert "STORAGE_BACKEND=none" in response.json()["error"]["message"]
    assert ready.json()["checks"]["storage"]["status"] == "not configured"


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("report\x00.png", "report.png"),
        ("invoice\u202egnp.exe", "invoicegnp.exe"),  # a right-to-left override, removed
        ("a\r\nSubject: hi.txt", "aSubject: hi.txt"),
        ("x" * 300 + ".png", "x" * 255),
        ("..", "upload"),
    ],
)
def test_safe_filename(raw: str, safe: str) -> None:
    assert safe_filename(raw) == safe


async def test_times_read_the_same_in_every_answer(
    client: AsyncClient, ada: dict[str, str]
) -> None:
    # SQLite returns stored times without a zone; the answers must not show it.
    created = (await upload(client, ada, PNG)).json()
    listed = (await client.get(await files_path(client, ada), headers=ada)).json()["items"][0]
    read = (
        await client.get(f"{await files_path(client, ada)}/{created['id']}", headers=ada)
    ).json()
    me = (await client.get("/api/v1/users/me", headers=ada)).json()
    assert created["created_at"] == listed["created_at"] == read["created_at"]
    assert created["created_at"].endswith("Z")
    assert me["created_at"].endswith("Z")
