"""Faults on the live stack: a dependency goes away while the API and the worker run.

Each test takes one dependency away from the running processes (Redis is killed, the S3
endpoint vanishes, the SMTP server refuses mail, PostgreSQL drops the app's connections
or refuses new ones), checks the answers the app promises while it is gone, brings it
back, and checks that the same processes carry on without a restart and that nothing was
lost or kept half-done. This module's Redis is a redis-server of its own, which may be
killed; the machine's shared services are never stopped.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from e2e_support import (
    OWNER_EMAIL,
    OWNER_PASSWORD,
    PrivateRedis,
    Stack,
    error_of,
    launch,
    link_token,
)
from net import wait_until
from template_tools import ProjectEnv

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

PASSWORD = "a passphrase for the fault tests"


@pytest.fixture(scope="module")
def stack(
    render: Callable[..., Path],
    project_env: ProjectEnv,
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: PrivateRedis,
) -> Iterator[Stack]:
    with launch(
        render(),
        project_env,
        tmp_path_factory.mktemp("faults"),
        redis_url=redis_server.url,
        # Registrations and logins from one address, many more than a person makes.
        LOGIN_LIMIT_PER_ADDRESS="1000/minute",
        EMAIL_REQUEST_LIMIT_PER_ADDRESS="1000/hour",
    ) as running:
        yield running


@pytest.fixture
def owner(stack: Stack) -> str:
    """A fresh access token of the owner, who is verified and may upload."""
    token: str = stack.api.login(OWNER_EMAIL, OWNER_PASSWORD)["access_token"]
    return token


@pytest.fixture(autouse=True)
def still_running(stack: Stack) -> Iterator[None]:
    """Whatever a test did, the API it started with still runs, and so does a worker."""
    api = stack.processes["api"].pid
    yield
    assert set(stack.processes) == {"api", "worker"}
    for name, process in stack.processes.items():
        assert process.poll() is None, f"{name} exited:\n{stack.log(name)[-4000:]}"
    assert stack.processes["api"].pid == api


def png(size: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + os.urandom(size - 8)


def upload(stack: Stack, token: str, content: bytes, expect: int) -> requests.Response:
    return stack.api.call(
        "POST",
        stack.api.files_path(token),
        expect,
        token=token,
        files={"file": ("fault.png", content, "image/png")},
    )


def wait_processed(stack: Stack, token: str, file_id: str) -> dict[str, Any]:
    def processed() -> dict[str, Any] | None:
        file: dict[str, Any] = stack.api.call(
            "GET", f"{stack.api.files_path(token)}/{file_id}", 200, token=token
        ).json()
        return file if file["status"] != "pending" else None

    file: dict[str, Any] = wait_until(processed, f"file {file_id} to be processed", timeout=60)
    return file


def download(stack: Stack, token: str, file_id: str) -> bytes:
    path = f"{stack.api.files_path(token)}/{file_id}/download"
    response = stack.api.call("GET", path, 200, token=token)
    return response.content


def file_ids(stack: Stack, token: str) -> list[str]:
    files = stack.api.files_path(token)
    page = stack.api.call("GET", files, 200, token=token, params={"limit": 100})
    return [item["id"] for item in page.json()["items"]]


def readiness(stack: Stack) -> tuple[int, dict[str, Any]]:
    response = requests.get(f"{stack.url}/health/ready", timeout=10)
    body: dict[str, Any] = response.json()
    return response.status_code, body


def assert_unavailable(response: requests.Response, message: str) -> None:
    assert response.headers["Retry-After"] == "30"
    assert error_of(response) == {
        "code": "service_unavailable",
        "message": message,
        "details": None,
    }


QUEUE_DOWN = "The job queue is unreachable, so nothing was done; try again soon."
STORAGE_DOWN = "File storage is unavailable, so nothing was changed; try again soon."
DATABASE_DOWN = "The database is unreachable; try again soon."


def test_a_refused_verification_email_is_retried_and_arrives_once(stack: Stack) -> None:
    api, mailbox = stack.api, stack.mailbox
    address = "refused@example.com"
    mailbox.refusing = True
    try:
        api.call(
            "POST", "/api/v1/auth/register", 202, json={"email": address, "password": PASSWORD}
        )
        # The first attempt and one retry are refused (451, a temporary failure)...
        mailbox.wait_for_refusals(2)
        assert mailbox.to(address) == []
    finally:
        mailbox.refusing = False
    # ... and a later retry gets through, with a link that works.
    (message,) = mailbox.wait_for(address)
    api.call(
        "POST",
        "/api/v1/auth/verify",
        204,
        json={"token": link_token(message, "verify-email")},
    )
    me = api.call(
        "GET", "/api/v1/users/me", 200, token=api.login(address, PASSWORD)["access_token"]
    )
    assert me.json()["is_verified"] is True
    assert "retries left" in stack.log("worker")
    # Sent exactly once: a retry after success would have delivered a second copy.
    wait_until(lambda: "sent through" in stack.log("worker"), "the worker to log the send")
    assert len(mailbox.to(address)) == 1


def test_an_email_sent_while_smtp_is_down_arrives_when_it_is_back(stack: Stack) -> None:
    api, mailbox = stack.api, stack.mailbox
    address = "smtp-down@example.com"
    failures = stack.log("worker").count("retries left")
    stack.smtp.stop()
    try:
        # The account is created: mail is sent by a job, and a job can wait.
        api.call(
            "POST", "/api/v1/auth/register", 202, json={"email": address, "password": PASSWORD}
        )
        wait_until(
            lambda: stack.log("worker").count("retries left") > failures,
            "the send to fail while the SMTP server is down",
        )
    finally:
        stack.smtp.start()
    (message,) = mailbox.wait_for(address)
    api.call(
        "POST", "/api/v1/auth/verify", 204, json={"token": link_token(message, "verify-email")}
    )
    assert "Connection refused" in stack.log("worker")


def test_s3_gone_answers_503_keeps_nothing_and_recovers(stack: Stack, owner: str) -> None:
    before = png(300_000)
    kept = upload(stack, owner, before, 201).json()
    assert wait_processed(stack, owner, kept["id"])["status"] == "ready"
    listed = file_ids(stack, owner)

    stack.s3.close()
    try:
        refused = upload(stack, owner, png(300_000), 503)
        assert_unavailable(refused, STORAGE_DOWN)
        # A download streams from the object store, so it waits for it too.
        unavailable = stack.api.call(
            "GET", f"{stack.api.files_path(owner)}/{kept['id']}/download", 503, token=owner
        )
        assert unavailable.headers["Retry-After"]
        status, body = readiness(stack)
        assert status == 503
        assert body["failing"] == ["storage"]
        assert body["checks"]["database"]["status"] == "ok"
        assert body["checks"]["redis"]["status"] == "ok"
        # The refused upload left no row behind.
        assert file_ids(stack, owner) == listed
    finally:
        stack.s3.open()

    assert readiness(stack)[0] == 200
    assert download(stack, owner, kept["id"]) == before
    after = png(300_000)
    uploaded = upload(stack, owner, after, 201).json()
    assert wait_processed(stack, owner, uploaded["id"])["status"] == "ready"
    assert download(stack, owner, uploaded["id"]) == after


def test_a_file_job_that_meets_s3_gone_is_retried(stack: Stack, owner: str) -> None:
    # The upload is stored while the worker is away; when the worker takes the job, S3
    # is gone, and the job's retry finds it back.
    stack.stop("worker")
    content = png(200_000)
    try:
        uploaded = upload(stack, owner, content, 201).json()
        stack.s3.close()
        failures = stack.log("worker").count("retries left")
        stack.start_worker()
        wait_until(
            lambda: stack.log("worker").count("retries left") > failures,
            "the process_file job to fail while S3 is gone",
        )
        path = f"{stack.api.files_path(owner)}/{uploaded['id']}"
        file = stack.api.call("GET", path, 200, token=owner).json()
        assert file["status"] == "pending"
    finally:
        stack.s3.open()
        if "worker" not in stack.processes:
            stack.start_worker()
    file = wait_processed(stack, owner, uploaded["id"])
    assert file["status"] == "ready"
    assert file["checksum_sha256"] == hashlib.sha256(content).hexdigest()
    assert download(stack, owner, uploaded["id"]) == content


def test_redis_gone_mid_run(stack: Stack, redis_server: PrivateRedis, owner: str) -> None:
    api, mailbox = stack.api, stack.mailbox
    address = "during-redis-outage@example.com"
    listed = file_ids(stack, owner)
    worker = stack.processes["worker"].pid
    redis_server.kill()
    try:
        status, body = readiness(stack)
        assert status == 503
        assert body["failing"] == ["redis"]
        # Logins go on (throttled in the process's memory meanwhile), and so does
        # everything that needs no job.
        pair = api.login(OWNER_EMAIL, OWNER_PASSWORD)
        api.call("GET", "/api/v1/users/me", 200, token=pair["access_token"])
        # What needs a job is refused whole: no account without its verification email,
        # no file that would never be processed.
        refused = api.call(
            "POST", "/api/v1/auth/register", 503, json={"email": address, "password": PASSWORD}
        )
        assert_unavailable(refused, QUEUE_DOWN)
        assert_unavailable(upload(stack, owner, png(100_000), 503), QUEUE_DOWN)
        assert file_ids(stack, owner) == listed
    finally:
        redis_server.start()

    wait_until(lambda: readiness(stack)[0] == 200, "readiness after Redis came back")
    # The refused registration kept nothing: the address is free, and its email arrives
    # through the same worker, which reconnected by itself.
    api.call("POST", "/api/v1/auth/register", 202, json={"email": address, "password": PASSWORD})
    (message,) = mailbox.wait_for(address, timeout=60)
    api.call(
        "POST", "/api/v1/auth/verify", 204, json={"token": link_token(message, "verify-email")}
    )
    uploaded = upload(stack, owner, png(100_000), 201).json()
    assert wait_processed(stack, owner, uploaded["id"])["status"] == "ready"
    assert stack.processes["worker"].pid == worker


def test_postgres_connections_dropped(stack: Stack, owner: str) -> None:
    api = stack.api
    api.call("GET", "/api/v1/users/me", 200, token=owner)
    # Every connection the API (and anything else) holds to its database is ended by the
    # server; the pool notices on checkout and reconnects.
    assert stack.drop_connections() >= 1
    for _ in range(3):
        me = api.call("GET", "/api/v1/users/me", 200, token=owner).json()
        assert me["email"] == OWNER_EMAIL
    api.login(OWNER_EMAIL, OWNER_PASSWORD)


def test_postgres_gone_then_back(stack: Stack, owner: str) -> None:
    api = stack.api
    stack.postgres.close()
    try:
        status, body = readiness(stack)
        assert status == 503
        assert body["failing"] == ["database"]
        # Without its database the API can do nothing, and says so as it does for any
        # dependency that is down: 503 with Retry-After, not an internal error.
        refused = api.call("GET", "/api/v1/users/me", 503, token=owner)
        assert_unavailable(refused, DATABASE_DOWN)
        login = api.call(
            "POST",
            "/api/v1/auth/login",
            503,
            data={"username": OWNER_EMAIL, "password": OWNER_PASSWORD},
        )
        assert_unavailable(login, DATABASE_DOWN)
    finally:
        stack.postgres.open()
    wait_until(lambda: readiness(stack)[0] == 200, "readiness after PostgreSQL came back")
    assert api.call("GET", "/api/v1/users/me", 200, token=owner).json()["email"] == OWNER_EMAIL
    # The worker's jobs open their own connections: an upload is processed again.
    uploaded = upload(stack, owner, png(50_000), 201).json()
    assert wait_processed(stack, owner, uploaded["id"])["status"] == "ready"
