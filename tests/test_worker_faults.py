"""Workers killed with SIGKILL on the live stack: what they were doing carries on within
seconds, on the workers that are left or on a replacement.

The stack runs with the project's own retry intervals (10, 60 and 300 seconds), so the
times measured here are a deployment's. Each test prints how long the recovery took.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from e2e_support import (
    BUCKET,
    OWNER_EMAIL,
    OWNER_PASSWORD,
    Gate,
    PrivateRedis,
    Stack,
    launch,
    through,
)
from net import free_port, wait_until
from template_tools import ProjectEnv

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

PASSWORD = "a passphrase for the worker faults"
# Far below the ten minutes RQ's own clean-up took, and generous for a loaded machine:
# the design's figure is about 20 s (keeper.py: ALIVE_SECONDS plus the first retry).
RECOVERY_DEADLINE = 60


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
        tmp_path_factory.mktemp("worker-faults"),
        redis_url=redis_server.url,
        worker=False,
        JOB_RETRY_INTERVALS="10,60,300",
        EMAIL_REQUEST_LIMIT_PER_ADDRESS="1000/hour",
        # Storage is swept every 2 s, of what is older than 5 s.
        STORAGE_SWEEP_INTERVAL_SECONDS="2",
        STORAGE_SWEEP_GRACE_SECONDS="5",
    ) as running:
        yield running


@pytest.fixture(autouse=True)
def workers_stopped(stack: Stack) -> Iterator[None]:
    """Each test starts the workers it needs; none outlives it."""
    yield
    for name in [name for name in stack.processes if name.startswith("worker")]:
        stack.stop(name)


def redis_get(stack: Stack, key: str) -> str:
    """A key of the stack's Redis, read with the project's own client."""
    return stack.run(
        "-c",
        "import os, sys; from redis import Redis; "
        f"value = Redis.from_url(os.environ['REDIS_URL']).get({key!r}); "
        "sys.stdout.write(value.decode() if value else '')",
    )


def test_a_job_interrupted_by_a_killed_worker_runs_again_within_a_minute(stack: Stack) -> None:
    api = stack.api
    token = api.login(OWNER_EMAIL, OWNER_PASSWORD)["access_token"]
    # The first worker reaches storage through a gate that hangs: it takes the file's
    # job and is still reading the object when it is killed.
    hanging = Gate(*stack.s3.target)
    hanging.open()
    hanging.freeze()
    try:
        stack.start_worker("worker-a", S3_ENDPOINT_URL=hanging.url)
        content = b"\x89PNG\r\n\x1a\n" + os.urandom(64 * 1024)
        files = api.files_path(token)
        file_id = api.call(
            "POST",
            files,
            201,
            token=token,
            files={"file": ("killed.png", content, "image/png")},
        ).json()["id"]
        wait_until(
            lambda: re.search(r": default: \w", stack.log("worker-a")),
            "worker-a to take the file's job",
        )
        time.sleep(0.5)  # into the job: reading from storage
        stack.kill("worker-a")
        killed = time.monotonic()
        # A supervisor (Fly, Render, systemd) starts a replacement.
        stack.start_worker("worker-b")

        def ready() -> bool:
            file = api.call("GET", f"{files}/{file_id}", 200, token=token).json()
            assert file["status"] != "failed", file
            return bool(file["status"] == "ready")

        wait_until(ready, "the interrupted job to run again", timeout=RECOVERY_DEADLINE)
        recovered = time.monotonic() - killed
    finally:
        hanging.thaw()
        hanging.close()
    print(f"\nkilled mid-job -> file ready: {recovered:.1f} s")
    log = stack.log("worker-b")
    assert "were running on workers that died; handing them back" in log
    # Run again once: the replacement marked it ready once.
    wait_until(lambda: f"File {file_id} ready" in stack.log("worker-b"), "the job's log line")
    assert stack.log("worker-b").count(f"File {file_id} ready") == 1


def test_retries_resume_within_a_minute_when_the_keeper_is_killed(stack: Stack) -> None:
    api, mailbox = stack.api, stack.mailbox
    names = {stack.start_worker("worker-c"): "worker-c", stack.start_worker("worker-d"): "worker-d"}
    address = "keeper-killed@example.com"
    mailbox.refusing = True
    try:
        api.call(
            "POST", "/api/v1/auth/register", 202, json={"email": address, "password": PASSWORD}
        )
        # The first attempt is refused: the job waits 10 s for its retry.
        mailbox.wait_for_refusals(1)
        keeper = wait_until(lambda: redis_get(stack, "dayone:keeper-lease"), "a keeper")
        # The worker that moves retries back to their queue is killed.
        stack.kill(names[keeper])
        killed = time.monotonic()
    finally:
        mailbox.refusing = False
    mailbox.wait_for(address, timeout=RECOVERY_DEADLINE)
    recovered = time.monotonic() - killed
    print(f"\nkeeper killed with a retry waiting -> email delivered: {recovered:.1f} s")
    survivor = next(name for worker, name in names.items() if worker != keeper)
    wait_until(lambda: "sent through" in stack.log(survivor), "the survivor to log the send")
    assert len(mailbox.to(address)) == 1


def bucket(stack: Stack, listing: str) -> set[str]:
    """Keys the stack's bucket lists, with the project's own client: "objects", or
    "uploads" (multipart uploads in progress)."""
    if listing == "objects":
        pages, items = "list_objects_v2", "Contents"
    else:
        pages, items = "list_multipart_uploads", "Uploads"
    output = stack.run(
        "-c",
        "import os, sys, boto3; "
        "client = boto3.client('s3', endpoint_url=os.environ['S3_ENDPOINT_URL'], "
        "region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing'); "
        f"pages = client.get_paginator({pages!r}).paginate(Bucket={BUCKET!r}); "
        f"sys.stdout.write('\\n'.join(o['Key'] for p in pages for o in p.get({items!r}, [])))",
    )
    return {line for line in output.splitlines() if line.startswith("uploads/")}


def test_an_api_killed_between_storing_an_upload_and_its_row_leaves_nothing_behind(
    stack: Stack,
) -> None:
    token = stack.api.login(OWNER_EMAIL, OWNER_PASSWORD)["access_token"]
    # A second API process reaches the database through a gate that will hang, so that
    # it stores the upload's object and is killed while saving the file's row.
    database = Gate(*stack.postgres.target)
    database.open()
    port = free_port()
    stack.start(
        "api-doomed",
        "-m",
        "app",
        PORT=str(port),
        DATABASE_URL=through(database, stack.database),
    )
    doomed = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(f"{doomed}/health", timeout=2).ok, "the second API")
    stack.start_worker("worker-e")
    before = bucket(stack, "objects")
    files = stack.api.files_path(token)
    boundary = "doomed-boundary"
    halfway, resume = threading.Event(), threading.Event()

    def body() -> Iterator[bytes]:
        yield (
            (
                f"--{boundary}\r\n"
                'Content-Disposition: form-data; name="file"; filename="doomed.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
            + b"\x89PNG\r\n\x1a\n"
            + os.urandom(6 * 1024 * 1024)
        )
        halfway.set()
        resume.wait(30)
        yield f"\r\n--{boundary}--\r\n".encode()

    def send() -> None:
        try:
            requests.post(
                f"{doomed}{files}",
                data=body(),
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                },
                timeout=60,
            )
        except requests.ConnectionError:
            pass  # the process is killed before it answers

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert halfway.wait(30)
        # Once the first part is in storage, the user has been loaded: from now on the
        # database gets nothing from this process, so its row will not get through.
        wait_until(lambda: bucket(stack, "uploads"), "the upload's first part", timeout=30)
        database.freeze()
        resume.set()
        (orphan,) = wait_until(
            lambda: bucket(stack, "objects") - before,
            "the upload's object to be stored",
            timeout=30,
        )
        stack.kill("api-doomed")
        killed = time.monotonic()
    finally:
        resume.set()
        database.thaw()
        database.close()
        sender.join(timeout=30)
    # No row refers to the object. A worker's sweep removes it once it is older than the
    # grace (5 s here); an upload through the surviving API meanwhile is untouched.
    kept = stack.api.call(
        "POST",
        files,
        201,
        token=token,
        files={"file": ("kept.png", b"\x89PNG\r\n\x1a\n" + os.urandom(50_000), "image/png")},
    ).json()
    wait_until(
        lambda: orphan not in bucket(stack, "objects"),
        "the sweep to remove the object",
        timeout=RECOVERY_DEADLINE,
    )
    recovered = time.monotonic() - killed
    print(f"\nAPI killed with an object stored and no row -> object removed: {recovered:.1f} s")
    assert f"Object {orphan} belonged to no file; removed" in stack.log("worker-e")
    file = stack.api.call("GET", f"{files}/{kept['id']}", 200, token=token).json()
    assert file["status"] == "ready"
    assert stack.api.call("GET", f"{files}/{kept['id']}/download", 200, token=token).ok
