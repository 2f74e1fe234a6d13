"""When the database fails, the client hears about it: a commit that fails is the answer
(never a success sent before it), and an unreachable database is a 503 with Retry-After,
as for any other dependency that is down."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.core.clock import utcnow
from app.core.config import Settings
from app.core.errors import database_unreachable
from app.core.security import create_access_token
from app.main import create_app
from app.models import User
from tests.support import PASSWORD, bearer


def failing_commit(error: Exception) -> Any:
    def fail(connection: Any) -> None:
        raise error

    return fail


async def test_a_failed_commit_is_answered_not_hidden_behind_a_201(
    app: FastAPI, client: AsyncClient
) -> None:
    engine = app.state.engine.sync_engine
    fail = failing_commit(ConnectionResetError("the database went away during COMMIT"))
    event.listen(engine, "commit", fail)
    try:
        response = await client.post(
            "/api/v1/auth/register", json={"email": "lost@example.com", "password": PASSWORD}
        )
    finally:
        event.remove(engine, "commit", fail)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    assert response.json()["error"]["message"] == "The database is unreachable; try again soon."
    async with app.state.sessionmaker() as session:
        assert (await session.scalars(select(User))).all() == []


async def test_an_unreachable_database_is_a_503(settings: Settings) -> None:
    # A PostgreSQL URL on a port where nothing listens: every connection is refused.
    nowhere = "postgresql+asyncpg://postgres@127.0.0.1:9/nowhere"
    app = create_app(settings.model_copy(update={"DATABASE_URL": nowhere}))
    token = create_access_token(uuid.uuid4(), uuid.uuid4(), settings, utcnow())
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            me = await client.get("/api/v1/users/me", headers=bearer(token))
            ready = await client.get("/health/ready")
    assert me.status_code == 503, me.text
    assert me.headers["retry-after"] == "30"
    assert me.json()["error"]["code"] == "service_unavailable"
    assert ready.status_code == 503
    assert ready.json()["failing"] == ["database"]


class DriverError(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "invalidated", "unreachable"),
    [
        ("08006", False, True),  # connection failure
        ("57P03", False, True),  # the server is starting up or shutting down
        ("53300", False, True),  # too many connections
        (None, True, True),  # the driver noticed the connection was gone
        ("23505", False, False),  # a unique violation: a real error of the query
        ("42P01", False, False),  # no such table
        (None, False, False),
    ],
)
def test_what_counts_as_an_unreachable_database(
    sqlstate: str | None, invalidated: bool, unreachable: bool
) -> None:
    error = DBAPIError("SELECT 1", {}, DriverError(sqlstate), connection_invalidated=invalidated)
    assert database_unreachable(error) is unreachable
    assert database_unreachable(ConnectionRefusedError())
    assert not database_unreachable(ValueError())


def end_server_processes(database_url: str) -> int:
    """End, from another thread, every server process connected to the app's database and
    wait until they are gone; how many there were. The caller's event loop is blocked
    meanwhile, as a busy server's would be: it has not yet read what the server sent."""
    database = make_url(database_url).database
    ended: list[int] = []

    async def terminate() -> None:
        engine = create_async_engine(database_url, poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                count = await connection.scalar(
                    text(
                        "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
                        "WHERE datname = :database AND pid <> pg_backend_pid()"
                    ),
                    {"database": database},
                )
                ended.append(int(count or 0))
        finally:
            await engine.dispose()

    thread = threading.Thread(target=asyncio.run, args=(terminate(),))
    thread.start()
    thread.join()
    return ended[0]


async def test_connections_the_server_ended_are_replaced_before_a_request_gets_them(
    app: FastAPI, client: AsyncClient, ada: dict[str, str], settings: Settings
) -> None:
    if not settings.DATABASE_URL.startswith("postgresql"):
        pytest.skip("SQLite has no server to end a connection")
    # A failover or an administrator ends the pool's connections while they idle; the
    # next requests, reads and writes, are answered as if nothing happened.
    for round_ in range(3):
        busy = [client.get("/api/v1/users/me", headers=ada) for _ in range(8)]
        assert {response.status_code for response in await asyncio.gather(*busy)} == {200}
        assert end_server_processes(settings.DATABASE_URL) >= 1
        me = await client.get("/api/v1/users/me", headers=ada)
        assert me.status_code == 200, (round_, me.text)
        renamed = await client.patch(
            "/api/v1/users/me", headers=ada, json={"full_name": f"Ada {round_}"}
        )
        assert renamed.status_code == 200, (round_, renamed.text)
