"""The app's test fixtures (a pytest plugin: the conftest.py of backend/tests and of
tools/tests load it, so both suites share them).

The suite runs on a throwaway SQLite file by default. With TEST_DATABASE_URL set to a
PostgreSQL server (for example postgresql://postgres@127.0.0.1:5432/postgres), each run
creates its own database there, migrates it, and drops it at the end. Either way every
test starts from empty tables.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import Environment, Settings, async_database_url
from app.core.migrations import upgrade_to_head
from app.main import create_app
from tests.support import empty_tables, token_for

# A fixed key, so that processes the tests start (workers, servers) share it.
TEST_SECRET_KEY = "tests-only-N4kz8Qw2Lr7Vx1Hc5Jp9Tb3Fm6Yd0Gs2Ea8Ku4Wo7Ri1Zn5"


def postgres_server_url() -> str | None:
    url = os.environ.get("TEST_DATABASE_URL")
    if url is None and os.environ.get("REQUIRE_POSTGRES") == "1":
        pytest.exit("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set", returncode=2)
    return url


async def _run_admin(server_url: str, statement: str) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction, hence AUTOCOMMIT.
    engine = create_async_engine(async_database_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def make_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], str]]:
    """A factory of empty databases, all removed when the session ends."""
    server_url = postgres_server_url()
    created: list[str] = []

    def make() -> str:
        if server_url is None:
            path = tmp_path_factory.mktemp("db") / "test.db"
            return f"sqlite+aiosqlite:///{path}"
        name = f"test_{uuid.uuid4().hex[:16]}"
        asyncio.run(_run_admin(server_url, f'CREATE DATABASE "{name}"'))
        created.append(name)
        return (
            make_url(async_database_url(server_url))
            .set(database=name)
            .render_as_string(hide_password=False)
        )

    yield make
    for name in created:
        asyncio.run(_run_admin(server_url or "", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def database_url(make_database: Callable[[], str]) -> str:
    url = make_database()
    upgrade_to_head(url)
    return url


@pytest.fixture(scope="module")
def server_settings(settings: Settings, make_database: Callable[[], str]) -> Settings:
    """`settings` on a migrated database of the module's own: for servers in processes of
    their own, whose rows no test's clean-up would remove from the shared database."""
    url = make_database()
    upgrade_to_head(url)
    return settings.model_copy(update={"DATABASE_URL": url})


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        _env_file=None,
        ENVIRONMENT=Environment.TEST,
        SECRET_KEY=TEST_SECRET_KEY,
        DATABASE_URL=database_url,
        REDIS_URL=None,
        EMAIL_OUTBOX_DIR=tmp_path_factory.mktemp("outbox"),
        UPLOAD_DIR=tmp_path_factory.mktemp("uploads"),
        STORAGE_BACKEND=None,
        SMTP_HOST=None,
        S3_BUCKET=None,
        JOB_RETRY_INTERVALS=[0],
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application
        await empty_tables(application.state.engine)
    for message in settings.EMAIL_OUTBOX_DIR.glob("*.eml"):
        message.unlink()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def ada(app: FastAPI, settings: Settings) -> dict[str, str]:
    """Authorization headers of a verified member, ada@example.com."""
    return await token_for(app, settings, "ada@example.com")
