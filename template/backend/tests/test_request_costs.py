"""What a request costs the database: the same statements for a list whatever its page
size, and on PostgreSQL no transaction for a request that only reads (no BEGIN, no
COMMIT), which is why a write through one is refused."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from httpx import AsyncClient
from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.deps import SessionDep
from app.core.config import Settings
from app.core.db import ReadOnlyTransactionError
from app.core.rbac import Role
from app.models import File, Membership, User
from tests.support import access_token, add_user, bearer, organization_of

PAGE_SIZES = (1, 10, 50)


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every SQL statement the engine sends while the block runs."""
    sent: list[str] = []

    def record(_connection: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        sent.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def statements_per_page(
    app: FastAPI, client: AsyncClient, path: str, headers: dict[str, str]
) -> dict[int, int]:
    counts = {}
    for limit in PAGE_SIZES:
        with statements(app.state.engine) as sent:
            response = await client.get(path, params={"limit": limit}, headers=headers)
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) == limit
        counts[limit] = len(sent)
    return counts


async def test_the_user_list_costs_the_same_statements_for_any_page_size(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    owner = await add_user(app, "owner@example.com", Role.OWNER)
    for number in range(max(PAGE_SIZES)):
        await add_user(app, f"member{number}@example.com")
    headers = bearer(await access_token(app, settings, owner.id))
    counts = await statements_per_page(app, client, "/api/v1/users", headers)
    assert len(set(counts.values())) == 1, counts


async def test_the_file_list_costs_the_same_statements_for_any_page_size(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    owner = await add_user(app, "owner@example.com", Role.OWNER)
    organization = await organization_of(app, owner)
    async with app.state.sessionmaker.begin() as session:
        session.add_all(
            File(
                organization_id=organization,
                owner_id=owner.id,
                object_key=f"uploads/{uuid.uuid4().hex}",
                original_name=f"notes-{number}.txt",
                content_type="text/plain",
                size=number,
                checksum_sha256="0" * 64,
            )
            for number in range(max(PAGE_SIZES))
        )
    headers = bearer(await access_token(app, settings, owner.id))
    path = f"/api/v1/organizations/{organization}/files"
    counts = await statements_per_page(app, client, path, headers)
    assert len(set(counts.values())) == 1, counts


async def test_the_member_list_costs_the_same_statements_for_any_page_size(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    owner = await add_user(app, "owner@example.com")
    organization = await organization_of(app, owner)
    async with app.state.sessionmaker.begin() as session:
        for number in range(max(PAGE_SIZES)):
            member = User(email=f"member{number}@example.com", hashed_password="x")
            session.add(member)
            await session.flush()
            session.add(
                Membership(organization_id=organization, user_id=member.id, role=Role.MEMBER)
            )
    headers = bearer(await access_token(app, settings, owner.id))
    counts = await statements_per_page(
        app, client, f"/api/v1/organizations/{organization}/members", headers
    )
    assert len(set(counts.values())) == 1, counts


@pytest.fixture
def clock_route(app: FastAPI) -> FastAPI:
    """The app with a route that reads the database's transaction clock twice: inside a
    transaction now() stands still, outside one each statement gets its own."""
    router = APIRouter()

    async def two_readings(session: SessionDep) -> dict[str, bool]:
        first: datetime | None = await session.scalar(select(func.now()))
        await asyncio.sleep(0.01)
        second: datetime | None = await session.scalar(select(func.now()))
        return {"in_a_transaction": first == second}

    router.add_api_route("/clock", two_readings, methods=["GET", "POST"])
    app.include_router(router)
    return app


async def test_a_request_that_reads_runs_without_a_transaction_on_postgresql(
    clock_route: FastAPI, client: AsyncClient
) -> None:
    if clock_route.state.read_sessionmaker is None:
        pytest.skip("SQLite: every request has a transaction, which costs no round trip")
    read = await client.get("/clock")
    assert read.status_code == 200
    assert read.json() == {"in_a_transaction": False}
    write = await client.post("/clock")
    assert write.status_code == 200
    assert write.json() == {"in_a_transaction": True}


async def test_a_write_through_a_read_session_is_refused(app: FastAPI) -> None:
    read_sessionmaker = app.state.read_sessionmaker
    if read_sessionmaker is None:
        pytest.skip("SQLite: requests that read get an ordinary transaction")
    member = await add_user(app, "member@example.com")
    async with read_sessionmaker() as session:
        session.add(User(email="new@example.com", hashed_password="x"))
        with pytest.raises(ReadOnlyTransactionError, match="POST, PUT, PATCH or DELETE"):
            await session.flush()
    async with read_sessionmaker() as session:
        with pytest.raises(ReadOnlyTransactionError, match="INSERT, UPDATE or DELETE"):
            await session.execute(update(User).values(full_name="Changed"))
    async with app.state.sessionmaker() as session:
        names = set(await session.scalars(select(User.email)))
        stored = await session.get(User, member.id)
    assert names == {"member@example.com"}
    assert stored is not None
    assert stored.full_name is None
