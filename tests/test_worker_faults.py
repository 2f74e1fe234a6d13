"""Workers killed with SIGKILL on the live stack: what they were doing carries on within
seconds, on the workers that are left or on a replacement.

The stack runs with the project's own retry intervals (10, 60 and 300 seconds), so the
times measured here are a deployment's. Each test prints how long the recovery took.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_support import OWNER_EMAIL, OWNER_PASSWORD, Gate, PrivateRedis, Stack, launch
from net import wait_until
from template_tools import ProjectEnv

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

PASSWORD = "a passphrase for the worker faults"
# Far below the ten minutes RQ's own clean-up took, and generous for a loaded machine:
# the design's figure is about 20 s (keeper.py: ALIVE_SECONDS plus the first retry).
RECOVERY_DEADLINE = 60


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


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
        file_id = api.call(
            "POST",
            "/api/v1/files",
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
            file = api.call("GET", f"/api/v1/files/{file_id}", 200, token=token).json()
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
