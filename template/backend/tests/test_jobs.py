"""Jobs on Redis, run by a real worker process, sending through a real SMTP server."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from typing import Any

import pytest
from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry
from sqlalchemy import func, select

from app.core.config import Settings
from app.core.queue import EMAIL_QUEUE
from app.models import File, User
from app.services.email_service import deliver_email
from tests.servers import BACKEND_DIR, Mailbox, run_worker, settings_env, start_worker
from tests.support import PASSWORD, files_path, link_token, running_app, stored_files, token_for

REFUSED_REDIS_URL = "redis://127.0.0.1:1/0"


async def register(client: Any, email: str = "ada@example.com") -> Any:
    return await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})


@pytest.mark.redis
async def test_the_verification_email_goes_through_the_worker_and_smtp(
    settings: Settings, redis_url: str, smtp_settings: dict[str, Any], mailbox: Mailbox
) -> None:
    async with running_app(settings, REDIS_URL=redis_url, **smtp_settings) as (app, client):
        assert (await register(client)).status_code == 202
        # Queued, not sent: the request did not wait for SMTP.
        assert mailbox.messages == []
        assert Queue(EMAIL_QUEUE, connection=Redis.from_url(redis_url)).count == 1
        worker = run_worker(app.state.settings)
        (message,) = mailbox.to("ada@example.com")
        assert message["Subject"] == "Confirm your email address"
        verified = await client.post("/api/v1/auth/verify", json={"token": link_token(message)})
        assert verified.status_code == 204
        # The worker's log names the message, never its link.
        assert "Confirm your email address" in worker.stderr
        assert link_token(message) not in worker.stderr


@pytest.mark.redis
async def test_a_refusing_smtp_server_means_retries_then_the_failed_registry(
    settings: Settings, redis_url: str, smtp_settings: dict[str, Any], mailbox: Mailbox
) -> None:
    mailbox.refusing = True
    overrides = {"REDIS_URL": redis_url, "JOB_RETRIES": 2, **smtp_settings}
    async with running_app(settings, **overrides) as (app, client):
        assert (await register(client)).status_code == 202
        worker = run_worker(app.state.settings)
        assert mailbox.messages == []
        assert worker.stderr.count("retries left") == 2
        assert "failed for good" in worker.stderr
        redis = Redis.from_url(redis_url)
        registry = FailedJobRegistry(EMAIL_QUEUE, connection=redis)
        (job_id,) = registry.get_job_ids()
        # The server is back: the failed job, requeued, is delivered. Nothing was lost.
        mailbox.refusing = False
        registry.requeue(job_id)
        run_worker(app.state.settings)
        (message,) = mailbox.to("ada@example.com")
        verified = await client.post("/api/v1/auth/verify", json={"token": link_token(message)})
        assert verified.status_code == 204


@pytest.mark.redis
async def test_sigterm_lets_the_job_in_hand_finish(
    settings: Settings, redis_url: str, smtp_settings: dict[str, Any], mailbox: Mailbox
) -> None:
    mailbox.delay = 2.0  # the SMTP server takes its time with the message
    async with running_app(settings, REDIS_URL=redis_url, **smtp_settings) as (app, client):
        assert (await register(client)).status_code == 202
        worker = start_worker(app.state.settings)
        try:
            assert await asyncio.to_thread(mailbox.receiving.wait, 60), "no job started"
            worker.send_signal(signal.SIGTERM)  # mid-job
            output, _ = await asyncio.to_thread(worker.communicate, timeout=60)
        finally:
            worker.kill()
    assert worker.returncode == 0, output
    assert "warm shut down requested" in output
    assert [message["To"] for message in mailbox.messages] == ["ada@example.com"]
    assert FailedJobRegistry(EMAIL_QUEUE, connection=Redis.from_url(redis_url)).count == 0


@pytest.mark.redis
async def test_the_worker_marks_an_uploaded_file_ready(
    settings: Settings, redis_url: str, s3_settings: dict[str, Any]
) -> None:
    content = b"\x89PNG\r\n\x1a\n" + b"\x01" * 5000
    async with running_app(settings, REDIS_URL=redis_url, **s3_settings) as (app, client):
        headers = await token_for(app, settings, "ada@example.com")
        response = await client.post(
            await files_path(client, headers),
            headers=headers,
            files={"file": ("a.png", content, "image/png")},
        )
        assert response.status_code == 201
        assert response.json()["status"] == "pending"
        worker = run_worker(app.state.settings)
        assert f"File {response.json()['id']} ready: 5008 bytes" in worker.stderr
        file = (
            await client.get(
                f"{await files_path(client, headers)}/{response.json()['id']}", headers=headers
            )
        ).json()
        assert file["status"] == "ready"


async def count(app: Any, model: type[Any]) -> int:
    async with app.state.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


async def test_with_redis_unreachable_the_api_serves_and_enqueuing_is_a_503(
    settings: Settings,
) -> None:
    async with running_app(settings, REDIS_URL=REFUSED_REDIS_URL) as (app, client):
        response = await register(client)
        assert response.status_code == 503
        assert "job queue is unreachable" in response.json()["error"]["message"]
        assert await count(app, User) == 0  # the registration was rolled back
        headers = await token_for(app, settings, "bob@example.com")
        stored_before = stored_files(settings)
        upload = await client.post(
            await files_path(client, headers),
            headers=headers,
            files={"file": ("n.txt", b"notes\n", "text/plain")},
        )
        assert upload.status_code == 503
        assert await count(app, File) == 0
        assert stored_files(settings) == stored_before
        # Reading and logging in go on; the rate limits count in memory meanwhile.
        assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200
        login = await client.post(
            "/api/v1/auth/login", data={"username": "bob@example.com", "password": PASSWORD}
        )
        assert login.status_code == 200
        ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["failing"] == ["redis"]


def test_the_worker_explains_a_missing_redis_url(settings: Settings) -> None:
    env = {**settings_env(settings), "REDIS_URL": ""}
    result = subprocess.run(
        [sys.executable, "-m", "app.worker", "--burst"],
        cwd=BACKEND_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "REDIS_URL is not set" in result.stderr


@pytest.mark.redis
async def test_an_email_job_that_runs_again_sends_nothing_twice(
    settings: Settings, redis_url: str, smtp_settings: dict[str, Any], mailbox: Mailbox
) -> None:
    # A job handed back after its worker was killed may have sent its email already.
    worker_settings = settings.model_copy(update={"REDIS_URL": redis_url, **smtp_settings})
    queue = Queue(EMAIL_QUEUE, connection=Redis.from_url(redis_url))
    job = queue.enqueue(
        deliver_email, "twice@example.com", "password_changed", "Your password was changed", {}
    )
    run_worker(worker_settings)
    assert len(mailbox.to("twice@example.com")) == 1
    queue.enqueue_job(job)  # the same job, queued again
    again = run_worker(worker_settings)
    assert len(mailbox.to("twice@example.com")) == 1
    assert "was sent by an earlier run of its job" in again.stderr
