"""The whole user journey over HTTP, on the real stack.

A project generated with the default answers runs as it would in production: the API
under uvicorn and one RQ worker, each started with the project's own command, against
PostgreSQL (a fresh database), Redis, moto's S3 server and an SMTP server on loopback.
Every step of the journey checks the status and the body it gets back.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    OWNER_EMAIL,
    OWNER_PASSWORD,
    SHARED_REDIS,
    Stack,
    error_of,
    launch,
    link_token,
    redis_cli,
)
from net import wait_until
from template_tools import ProjectEnv

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

# The target for the journey; generous for a loaded 2-core CI machine.
JOURNEY_SECONDS = 60


@pytest.fixture(scope="module")
def stack(
    render: Callable[..., Path], project_env: ProjectEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    redis_cli(SHARED_REDIS, "FLUSHDB")
    with launch(render(), project_env, tmp_path_factory.mktemp("e2e"), redis_url=SHARED_REDIS) as (
        running
    ):
        yield running


def png_bytes(size: int) -> bytes:
    """`size` bytes that the app's content detection takes for a PNG image."""
    return b"\x89PNG\r\n\x1a\n" + os.urandom(size - 8)


def test_the_user_journey(stack: Stack) -> None:
    api, mailbox = stack.api, stack.mailbox
    started = time.monotonic()
    email, password = "alice@example.com", "correct horse battery staple 42"

    # Register: the account exists, unverified, as a member; the email goes out through
    # Redis, the worker and SMTP.
    # The answer is the same for a taken address, so it says nothing of the account.
    registering = api.call(
        "POST",
        "/api/v1/auth/register",
        202,
        json={"email": "Alice@Example.com", "password": password, "full_name": "Alice"},
    )
    assert set(registering.json()) == {"detail"}
    # The request's id, made by the API, follows it into the job that sends the email.
    registration_id = registering.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", registration_id)

    (message,) = mailbox.wait_for(email)
    assert message["Subject"] == "Confirm your email address"
    assert message["From"].addresses[0].domain.endswith(".localhost")
    token = link_token(message, "verify-email")

    # Logged in but unverified: uploads are refused until the link is followed.
    pair = api.login(email, password)
    registered = api.call("GET", "/api/v1/users/me", 200, token=pair["access_token"]).json()
    assert registered["email"] == email
    assert registered["full_name"] == "Alice"
    assert registered["role"] == "member"
    assert (registered["is_active"], registered["is_verified"]) == (True, False)
    assert "hashed_password" not in registered
    # The account has an organization of its own from the start.
    files = api.files_path(pair["access_token"])
    refused = api.call(
        "POST",
        files,
        403,
        token=pair["access_token"],
        files={"file": ("early.png", png_bytes(64), "image/png")},
    )
    assert "Verify your email address" in error_of(refused)["message"]

    # Follow the link: the web app posts the token from the link's fragment.
    api.call("POST", "/api/v1/auth/verify", 204, json={"token": token})
    again = api.call("POST", "/api/v1/auth/verify", 400, json={"token": token})
    assert error_of(again)["code"] == "bad_request"

    first = api.login(email, password)
    me = api.call("GET", "/api/v1/users/me", 200, token=first["access_token"]).json()
    assert (me["id"], me["email"], me["is_verified"]) == (registered["id"], email, True)

    # Refresh rotates: a new refresh token, and the spent one must never work again.
    rotated = api.call(
        "POST", "/api/v1/auth/refresh", 200, json={"refresh_token": first["refresh_token"]}
    ).json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert rotated["access_token"] != first["access_token"]
    api.call("GET", "/api/v1/users/me", 200, token=rotated["access_token"])
    reused = api.call(
        "POST", "/api/v1/auth/refresh", 401, json={"refresh_token": first["refresh_token"]}
    )
    assert error_of(reused) == {
        "code": "unauthorized",
        "message": "The refresh token is not valid.",
        "details": None,
    }
    # Reuse means the token leaked: the whole family ends, the newest token with it.
    api.call("POST", "/api/v1/auth/refresh", 401, json={"refresh_token": rotated["refresh_token"]})

    # A fresh login starts a new family.
    session = api.login(email, password)
    access = session["access_token"]

    # Upload: streamed to S3, then checked by the worker's process_file job.
    content = png_bytes(6 * 1024 * 1024 + 12345)  # over one 5 MiB part: a multipart upload
    # A well-formed id from the client (or a proxy) is kept, here into the processing job.
    upload_id = "journey-upload-0001"
    uploading = api.call(
        "POST",
        files,
        201,
        token=access,
        files={"file": ("holiday photo.png", content, "application/octet-stream")},
        headers={"X-Request-ID": upload_id},
    )
    assert uploading.headers["X-Request-ID"] == upload_id
    uploaded = uploading.json()
    assert uploaded["owner_id"] == registered["id"]
    assert uploaded["original_name"] == "holiday photo.png"
    assert uploaded["content_type"] == "image/png"  # from the bytes, not the declared type
    assert uploaded["size"] == len(content)
    assert uploaded["checksum_sha256"] == hashlib.sha256(content).hexdigest()
    assert uploaded["status"] == "pending"

    def processed() -> dict[str, object] | None:
        file = api.call("GET", f"{files}/{uploaded['id']}", 200, token=access).json()
        return file if file["status"] != "pending" else None

    file = wait_until(processed, "the worker to process the upload")
    assert file["status"] == "ready", stack.log("worker")[-3000:]
    assert file["processed_at"] is not None
    listed = api.call("GET", files, 200, token=access).json()
    assert [item["id"] for item in listed["items"]] == [uploaded["id"]]
    assert listed["total"] == 1

    # Download: streamed from S3 through the API, with the same safety headers as a file
    # on local disk.
    downloaded = api.call("GET", f"{files}/{uploaded['id']}/download", 200, token=access)
    assert downloaded.content == content
    assert downloaded.headers["Content-Type"] == "image/png"
    assert downloaded.headers["X-Content-Type-Options"] == "nosniff"
    assert downloaded.headers["Cache-Control"] == "no-store"
    assert "holiday%20photo.png" in downloaded.headers["Content-Disposition"]

    # The owner (made by `python -m app.cli create-owner`) promotes Alice to admin.
    owner = api.login(OWNER_EMAIL, OWNER_PASSWORD)
    promoted = api.call(
        "PUT",
        f"/api/v1/users/{registered['id']}/role",
        200,
        token=owner["access_token"],
        json={"role": "admin"},
    ).json()
    assert (promoted["id"], promoted["role"]) == (registered["id"], "admin")

    # The role is read on every request: Alice's current token now lists users.
    page = api.call("GET", "/api/v1/users", 200, token=access).json()
    assert page["total"] == 2
    assert (page["limit"], page["offset"]) == (50, 0)
    assert [(user["email"], user["role"]) for user in page["items"]] == [
        (OWNER_EMAIL, "owner"),
        (email, "admin"),
    ]

    # Alice invites Bob into her organization; the invitation goes out by the worker.
    organization = files.removeprefix("/api/v1/organizations/").removesuffix("/files")
    bob, bob_password = "bob@example.com", "Bob's own passphrase for the journey"
    invited = api.call(
        "POST",
        f"/api/v1/organizations/{organization}/invitations",
        201,
        token=access,
        json={"email": bob, "role": "member"},
    ).json()
    assert (invited["email"], invited["role"]) == (bob, "member")
    (invitation,) = mailbox.wait_for(bob)
    assert invitation["Subject"].startswith("You are invited to join")
    invitation_token = link_token(invitation, "accept-invitation")
    # Bob has no account yet: he registers, confirms his address, then opens the link.
    api.call("POST", "/api/v1/auth/register", 202, json={"email": bob, "password": bob_password})
    arrived = mailbox.wait_for(bob, count=2)
    (verification,) = [m for m in arrived if m["Subject"] == "Confirm your email address"]
    verify_token = link_token(verification, "verify-email")
    api.call("POST", "/api/v1/auth/verify", 204, json={"token": verify_token})
    bob_access = api.login(bob, bob_password)["access_token"]
    joined = api.call(
        "POST",
        "/api/v1/invitations/accept",
        200,
        token=bob_access,
        json={"token": invitation_token},
    ).json()
    assert (joined["id"], joined["role"]) == (organization, "member")
    # Bob uploads into the shared organization; Alice sees his file beside hers.
    shared = api.call(
        "POST",
        files,
        201,
        token=bob_access,
        files={"file": ("minutes.txt", b"Minutes of the meeting.\n", "text/plain")},
    ).json()
    listing = api.call("GET", files, 200, token=access).json()
    assert {item["id"] for item in listing["items"]} == {uploaded["id"], shared["id"]}
    # Bob may read Alice's file but, a member, not delete it.
    api.call("GET", f"{files}/{uploaded['id']}/download", 200, token=bob_access)
    api.call("DELETE", f"{files}/{uploaded['id']}", 403, token=bob_access)
    api.call(
        "POST",
        "/api/v1/invitations/accept",
        400,
        token=bob_access,
        json={"token": invitation_token},
    )

    # Logout ends this login: its refresh token is spent, whoever holds it.
    api.call("POST", "/api/v1/auth/logout", 204, json={"refresh_token": session["refresh_token"]})
    ended = api.call(
        "POST", "/api/v1/auth/refresh", 401, json={"refresh_token": session["refresh_token"]}
    )
    assert error_of(ended)["message"] == "The refresh token is not valid."

    elapsed = time.monotonic() - started
    print(f"journey: {elapsed:.1f} s")
    assert elapsed < JOURNEY_SECONDS
    # One message per registration: nothing was sent twice.
    assert len(mailbox.to(email)) == 1
    # Nothing failed along the way.
    assert "Traceback" not in stack.log("api")
    assert "Traceback" not in stack.log("worker")

    # The logs are JSON, a line per record, with the request's id in the API's lines and
    # in the worker's lines for its jobs; no credential of the journey is in them.
    api_lines, worker_lines = log_records(stack, "api"), log_records(stack, "worker")
    for request_id, job_line in [
        (registration_id, ("Confirm your email address", email, "sent through")),
        (upload_id, (f"File {uploaded['id']} ready",)),
    ]:
        assert [line for line in api_lines if line.get("request_id") == request_id]
        assert any(
            all(part in line["message"] for part in job_line) and line.get("job_id")
            for line in worker_lines
            if line.get("request_id") == request_id
        ), [line for line in worker_lines if line.get("request_id") == request_id]
    credentials = api.credentials | {token, invitation_token, verify_token}
    credentials |= {password, bob_password, OWNER_PASSWORD, stack.env["SECRET_KEY"]}
    assert len(credentials) >= 12
    for name in ("api", "worker"):
        log = stack.log(name)
        assert not [secret for secret in credentials if secret in log], name


def log_records(stack: Stack, name: str) -> list[dict[str, Any]]:
    """The lines of a process's log, each checked to be one JSON object with the fields
    every record has."""
    records = []
    for line in stack.log(name).splitlines():
        record = json.loads(line)
        assert {"timestamp", "level", "logger", "message"} <= record.keys(), line
        records.append(record)
    return records


def test_readiness_names_every_dependency_ok(stack: Stack) -> None:
    ready = stack.api.call("GET", "/health/ready", 200).json()
    assert ready == {
        "status": "ok",
        "failing": [],
        "checks": {
            "database": {"status": "ok", "detail": None},
            "redis": {"status": "ok", "detail": None},
            "storage": {"status": "ok", "detail": None},
        },
    }
