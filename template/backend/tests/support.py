"""Helpers shared by the tests: accounts, tokens and the console outbox."""

from __future__ import annotations

import email
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.clock import utcnow
from app.core.config import Settings
from app.core.rbac import Role
from app.core.security import api_key_digest, create_access_token, new_api_key, password_hash
from app.main import create_app
from app.models import ApiKey, Base, Membership, User
from app.services import organization_service, token_service

PASSWORD = "correct horse battery staple"


async def empty_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(delete(table))


async def matrix_row(
    app: FastAPI,
    method: str,
    expected: dict[str, int],
    make_world: Callable[[], Awaitable[Any]],
    call: Callable[[Any, str], Awaitable[Response]],
) -> dict[str, str]:
    """A row of an authorization matrix: each actor of `expected` in turn, the world built
    again after a request that changed it, so that every actor meets the same one. What
    was not as expected, by actor."""
    world = await make_world()
    wrong = {}
    for actor, status in expected.items():
        response = await call(world, actor)
        if response.status_code != status:
            wrong[actor] = f"expected {status}, got {response.status_code}: {response.text[:200]}"
        if method != "GET" and response.is_success:
            await fresh_start(app)
            world = await make_world()
    return wrong


async def fresh_start(app: FastAPI) -> None:
    """Empty tables and spent budgets: the app as a new test finds it."""
    await empty_tables(app.state.engine)
    await app.state.throttle.fallback.storage.reset()


@asynccontextmanager
async def running_app(
    settings: Settings, **overrides: Any
) -> AsyncIterator[tuple[FastAPI, AsyncClient]]:
    """An app on `settings` with `overrides`, and a client for it; tables emptied after."""
    application = create_app(settings.model_copy(update=overrides))
    async with application.router.lifespan_context(application):
        transport = ASGITransport(app=application, raise_app_exceptions=False)
        try:
            async with AsyncClient(transport=transport, base_url="http://testserver") as client:
                yield application, client
        finally:
            await empty_tables(application.state.engine)


async def token_for(app: FastAPI, settings: Settings, email: str, **options: Any) -> dict[str, str]:
    """Authorization headers of a new account (verified member unless told otherwise)."""
    user = await add_user(app, email, **options)
    return bearer(await access_token(app, settings, user.id))


async def access_token(app: FastAPI, settings: Settings, user_id: uuid.UUID) -> str:
    """An access token of a new login of the user, as logging in would give."""
    async with app.state.sessionmaker.begin() as session:
        family = await token_service.start_family(session, user_id, settings)
    return create_access_token(user_id, family.family_id, settings, utcnow())


def operations(app: FastAPI) -> dict[tuple[str, str], dict[str, Any]]:
    """Every operation of the app's OpenAPI document by (METHOD, path): the routes it
    serves, however routers nest."""
    return {
        (method.upper(), path): operation
        for path, methods in app.openapi()["paths"].items()
        for method, operation in methods.items()
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(client: AsyncClient, email: str = "ada@example.com") -> dict[str, Any]:
    """Register through the API; the new account as /users/me shows it."""
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
    )
    assert response.status_code == 202, response.text
    tokens = await login(client, email)
    me = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200, me.text
    body: dict[str, Any] = me.json()
    return body


async def login(
    client: AsyncClient, email: str = "ada@example.com", password: str = PASSWORD
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/auth/login", data={"username": email, "password": password}
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


@cache
def password_hash_of_password() -> str:
    return password_hash.hash(PASSWORD)


async def add_user(
    app: FastAPI, email: str, role: Role = Role.MEMBER, *, verified: bool = True
) -> User:
    """Insert an account directly, faster than registering and verifying it."""
    async with app.state.sessionmaker() as session:
        user = User(
            email=email,
            hashed_password=password_hash_of_password(),
            role=role,
            is_verified=verified,
        )
        session.add(user)
        await session.flush()
        # As registering does.
        await organization_service.create_personal(session, user)
        await session.commit()
        return user


def stored_files(settings: Settings) -> set[Path]:
    """Every object local storage holds, as paths under UPLOAD_DIR."""
    return {path for path in settings.UPLOAD_DIR.rglob("*") if path.is_file()}


def messages_to(settings: Settings, address: str) -> list[EmailMessage]:
    """Messages the console backend wrote for `address`, oldest first."""
    messages = []
    paths = sorted(
        settings.EMAIL_OUTBOX_DIR.glob("*.eml"), key=lambda path: path.stat().st_mtime_ns
    )
    for path in paths:
        message = email.message_from_bytes(path.read_bytes(), policy=default_policy)
        assert isinstance(message, EmailMessage)
        if message["To"] == address:
            messages.append(message)
    return messages


def text_body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    content: str = part.get_content()
    return content


def link_token(message: EmailMessage) -> str:
    found = re.search(r"#token=([A-Za-z0-9_-]+)", text_body(message))
    assert found, text_body(message)
    return found.group(1)


async def organization_of(app: FastAPI, user: User) -> uuid.UUID:
    """The id of the user's first organization, read from the database."""
    async with app.state.sessionmaker() as session:
        found: uuid.UUID | None = await session.scalar(
            select(Membership.organization_id)
            .where(Membership.user_id == user.id)
            .order_by(Membership.created_at)
            .limit(1)
        )
    assert found is not None
    return found


async def join(app: FastAPI, organization: uuid.UUID, user: User, role: Role) -> None:
    """Make `user` a member of the organization with `role`, directly."""
    async with app.state.sessionmaker.begin() as session:
        session.add(Membership(organization_id=organization, user_id=user.id, role=role))


async def organization_id(client: AsyncClient, headers: dict[str, str]) -> str:
    """The id of the caller's first organization: the personal one, for a new account."""
    response = await client.get("/api/v1/organizations", headers=headers)
    assert response.status_code == 200, response.text
    found: str = response.json()["items"][0]["id"]
    return found


async def files_path(client: AsyncClient, headers: dict[str, str]) -> str:
    """The path of the caller's first organization's files."""
    return f"/api/v1/organizations/{await organization_id(client, headers)}/files"


async def upload(
    client: AsyncClient,
    headers: dict[str, str],
    content: bytes,
    name: str = "picture.png",
    declared: str = "image/png",
) -> Any:
    """POST one file to the caller's first organization, as a browser's form sends it."""
    return await client.post(
        await files_path(client, headers),
        headers=headers,
        files={"file": (name, content, declared)},
    )


async def add_api_key(
    app: FastAPI,
    settings: Settings,
    organization: uuid.UUID,
    creator: User,
    role: Role = Role.MEMBER,
    expires_at: datetime | None = None,
) -> tuple[str, uuid.UUID]:
    """An API key of the organization made by `creator`, directly: its secret and id."""
    secret, prefix = new_api_key()
    async with app.state.sessionmaker.begin() as session:
        key = ApiKey(
            organization_id=organization,
            name=f"{role} key",
            role=role,
            prefix=prefix,
            secret_hash=api_key_digest(secret, settings),
            created_by=creator.id,
            expires_at=expires_at,
        )
        session.add(key)
    return secret, key.id
