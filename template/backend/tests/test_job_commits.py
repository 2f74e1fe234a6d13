"""A job follows the transaction it depends on: it is queued only once that transaction
has committed, never for a registration, reset, password change or organization deletion
that was rolled back,
and a request whose job cannot be queued is refused before anything is saved."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from httpx import AsyncClient
from redis import Redis
from rq import Queue
from sqlalchemy import event, func, select

from app.api.deps import get_jobs
from app.core.config import Settings
from app.core.queue import EMAIL_QUEUE, JobQueue, QueueUnavailableError
from app.core.rbac import Role
from app.models import File, TokenPurpose, User
from app.services import token_service
from tests.support import (
    PASSWORD,
    access_token,
    add_user,
    bearer,
    messages_to,
    organization_id,
    organization_of,
    running_app,
    stored_files,
    token_for,
    upload,
)

NEW_PASSWORD = "a quite different passphrase 7"
ROUTES = ["register", "register-taken", "reset", "change-password", "invite"]


async def request_for(route: str, app: FastAPI, settings: Settings) -> dict[str, Any]:
    """The request `route` names, with the accounts and links it needs made directly."""
    if route == "register":
        return {
            "url": "/api/v1/auth/register",
            "json": {"email": "new@example.com", "password": PASSWORD},
        }
    if route == "register-taken":
        await add_user(app, "taken@example.com")
        return {
            "url": "/api/v1/auth/register",
            "json": {"email": "taken@example.com", "password": PASSWORD},
        }
    if route == "reset":
        user = await add_user(app, "reset@example.com")
        async with app.state.sessionmaker.begin() as session:
            token = await token_service.issue_one_time_token(
                session,
                user.id,
                TokenPurpose.RESET_PASSWORD,
                timedelta(minutes=30),
                email=user.email,
            )
        return {"url": "/api/v1/auth/reset", "json": {"token": token, "new_password": NEW_PASSWORD}}
    if route == "invite":
        owner = await add_user(app, "owner@example.com")
        return {
            "url": f"/api/v1/organizations/{await organization_of(app, owner)}/invitations",
            "headers": bearer(await access_token(app, settings, owner.id)),
            "json": {"email": "invited@example.com"},
        }
    headers = await token_for(app, settings, "change@example.com")
    return {
        "url": "/api/v1/auth/change-password",
        "headers": headers,
        "json": {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    }


@contextmanager
def commits_fail(app: FastAPI, failing: bool) -> Iterator[None]:
    """Every COMMIT of the app's engine fails while this lasts, if `failing`: after the
    route has enqueued, as a database that goes away at that moment would."""

    def fail(_connection: Any) -> None:
        raise ConnectionResetError("the database went away during COMMIT")

    engine = app.state.engine.sync_engine
    if failing:
        event.listen(engine, "commit", fail)
    try:
        yield
    finally:
        if failing:
            event.remove(engine, "commit", fail)


async def accounts(app: FastAPI) -> int:
    async with app.state.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(User)) or 0


async def post(client: AsyncClient, request: dict[str, Any]) -> Any:
    return await client.post(request["url"], json=request["json"], headers=request.get("headers"))


@pytest.mark.redis
@pytest.mark.parametrize("commit_fails", [False, True], ids=["commits", "commit-fails"])
@pytest.mark.parametrize("route", ROUTES)
async def test_a_job_is_queued_only_once_its_transaction_commits(
    settings: Settings, redis_url: str, route: str, commit_fails: bool
) -> None:
    emails = Queue(EMAIL_QUEUE, connection=Redis.from_url(redis_url))
    async with running_app(settings, REDIS_URL=redis_url) as (app, client):
        request = await request_for(route, app, settings)
        before = await accounts(app)
        with commits_fail(app, commit_fails):
            response = await post(client, request)
        if commit_fails:
            assert response.status_code == 503, response.text
            assert emails.count == 0, [job.description for job in emails.jobs]
            assert await accounts(app) == before
        else:
            assert response.status_code < 300, response.text
            assert emails.count == 1, [job.description for job in emails.jobs]


@pytest.mark.parametrize("commit_fails", [False, True], ids=["commits", "commit-fails"])
@pytest.mark.parametrize("route", ROUTES)
async def test_without_redis_a_rolled_back_request_sends_nothing(
    settings: Settings, route: str, commit_fails: bool
) -> None:
    async with running_app(settings) as (app, client):
        request = await request_for(route, app, settings)
        address = request["json"].get("email") or f"{route.partition('-')[0]}@example.com"
        with commits_fail(app, commit_fails):
            response = await post(client, request)
        sent = messages_to(settings, address)
        for message in settings.EMAIL_OUTBOX_DIR.glob("*.eml"):
            message.unlink()
    if commit_fails:
        assert response.status_code == 503, response.text
        assert sent == []
    else:
        assert response.status_code < 300, response.text
        assert len(sent) == 1


@pytest.mark.redis
async def test_redis_failing_just_after_the_commit_leaves_the_answer_and_logs_the_job(
    settings: Settings,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Redis answered when the route enqueued, and fails in the moment after the commit:
    # the registration is saved, so the answer says so, and the lost email is logged.
    def refuse(_queue: JobQueue, _redis: Redis, _call: Any) -> None:
        raise QueueUnavailableError("Connection reset by peer")

    monkeypatch.setattr(JobQueue, "_enqueue", refuse)
    async with running_app(settings, REDIS_URL=redis_url) as (app, client):
        response = await post(client, await request_for("register", app, settings))
        assert await accounts(app) == 1
    assert response.status_code == 202, response.text
    assert "Job send_email verify_email to new@example.com not queued after its" in caplog.text


@pytest.mark.parametrize("commit_fails", [False, True], ids=["commits", "commit-fails"])
@pytest.mark.parametrize("deleted", ["organization", "account"])
async def test_a_deletion_rolled_back_keeps_its_objects(
    settings: Settings, deleted: str, commit_fails: bool
) -> None:
    async with running_app(settings) as (app, client):
        headers = await token_for(app, settings, "ada@example.com")
        organization = await organization_id(client, headers)
        before = stored_files(settings)
        uploaded = await upload(client, headers, b"\x89PNG\r\n\x1a\n" + bytes(64))
        assert uploaded.status_code == 201, uploaded.text
        (stored,) = stored_files(settings) - before
        if deleted == "organization":
            path, actor = f"/api/v1/organizations/{organization}", headers
        else:
            # The account alone belongs to its organization, which goes with it.
            path = f"/api/v1/users/{uploaded.json()['owner_id']}"
            actor = await token_for(app, settings, "root@example.com", role=Role.OWNER)
        with commits_fail(app, commit_fails):
            response = await client.delete(path, headers=actor)
        async with app.state.sessionmaker() as session:
            files_left = await session.scalar(select(func.count()).select_from(File))
    if commit_fails:
        assert response.status_code == 503, response.text
        assert files_left == 1
        assert stored.exists()
    else:
        assert response.status_code == 204, response.text
        assert files_left == 0
        assert not stored.exists()


# Routes that enqueue outside a transaction: request-verify and request-reset read nothing
# (the job looks the address up), and an upload commits its row before it enqueues.
ENQUEUE_OUTSIDE_A_TRANSACTION = {"auth.request_verify", "auth.request_reset", "files.upload_file"}
TESTED_ABOVE = {
    "auth.register",
    "auth.reset",
    "auth.change_password",
    "organizations.delete_organization",
    "organizations.invite",
    "users.delete_user",
}


def api_routes(routes: Sequence[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes)


def calls(dependant: Dependant) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from calls(dependency)


def test_every_route_that_enqueues_is_tested_here(app: FastAPI) -> None:
    enqueuing = {
        f"{route.endpoint.__module__.rpartition('.')[2]}.{route.endpoint.__name__}"
        for route in api_routes(app.routes)
        if get_jobs in calls(route.dependant)
    }
    assert enqueuing == TESTED_ABOVE | ENQUEUE_OUTSIDE_A_TRANSACTION, (
        "a route that enqueues in a transaction belongs in ROUTES; one that enqueues "
        "outside one in ENQUEUE_OUTSIDE_A_TRANSACTION"
    )
