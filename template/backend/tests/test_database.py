"""The schema as migrations build it: upgrades, downgrades, no drift, working defaults."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.clock import utcnow
from app.core.config import Environment, Settings
from app.core.migrations import alembic_config
from app.core.rbac import Role
from app.main import create_app
from app.models import File, Membership, Organization, User


def test_migrations_round_trip_without_drift(make_database: Callable[[], str]) -> None:
    config = alembic_config(make_database())
    command.upgrade(config, "head")
    # `alembic check` fails when the models and the migrations disagree.
    command.check(config)
    command.downgrade(config, "base")
    command.upgrade(config, "head")
    command.check(config)


# The tables as revision 0003 left them, as far as these tests write them.
USERS_0003 = sa.table(
    "users", sa.column("id", sa.Uuid()), sa.column("email"), sa.column("hashed_password")
)
FILES_0003 = sa.table(
    "files",
    *(sa.column(name) for name in ("object_key", "original_name", "content_type", "size")),
    sa.column("id", sa.Uuid()),
    sa.column("owner_id", sa.Uuid()),
    sa.column("checksum_sha256"),
    sa.column("status"),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


async def _insert_accounts_of_0003(
    url: str, accounts: dict[uuid.UUID, str], file_id: uuid.UUID
) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                USERS_0003.insert(),
                [
                    {"id": id_, "email": email, "hashed_password": "x"}
                    for id_, email in accounts.items()
                ],
            )
            await connection.execute(
                FILES_0003.insert().values(
                    id=file_id,
                    owner_id=next(iter(accounts)),
                    object_key="uploads/a",
                    original_name="a.txt",
                    content_type="text/plain",
                    size=1,
                    checksum_sha256="0" * 64,
                    status="ready",
                    created_at=utcnow(),
                )
            )
    finally:
        await engine.dispose()


async def _memberships_and_file(url: str, file_id: uuid.UUID) -> tuple[list[Any], uuid.UUID]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(
                    Membership.user_id, Membership.role, Organization.name, Organization.id
                ).join(Organization, Organization.id == Membership.organization_id)
            )
            organization = await connection.scalar(
                select(File.organization_id).where(File.id == file_id)
            )
            memberships = list(rows)
    finally:
        await engine.dispose()
    assert organization is not None
    return memberships, organization


def test_accounts_and_files_of_before_organizations_move_into_personal_ones(
    make_database: Callable[[], str],
) -> None:
    url = make_database()
    config = alembic_config(url)
    command.upgrade(config, "0003")
    ada, bob, file_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    accounts = {ada: "ada@example.com", bob: "bob@example.com"}
    asyncio.run(_insert_accounts_of_0003(url, accounts, file_id))
    command.upgrade(config, "head")
    memberships, organization = asyncio.run(_memberships_and_file(url, file_id))
    by_user = {row.user_id: row for row in memberships}
    assert set(by_user) == {ada, bob}
    assert {row.role for row in memberships} == {Role.OWNER}
    assert by_user[ada].name == "ada's organization"
    assert organization == by_user[ada].id


async def test_a_new_user_gets_the_documented_defaults(app: FastAPI) -> None:
    async with app.state.sessionmaker() as session:
        session.add(User(email="ada@example.com", hashed_password="x"))
        await session.commit()
        user = (await session.scalars(select(User))).one()
    assert user.role is Role.MEMBER
    assert user.is_active is True
    assert user.is_verified is False
    assert user.created_at is not None
    assert user.id.version == 4


async def test_emails_are_unique(app: FastAPI) -> None:
    async with app.state.sessionmaker() as session:
        session.add(User(email="ada@example.com", hashed_password="x"))
        await session.commit()
        session.add(User(email="ada@example.com", hashed_password="y"))
        with pytest.raises(IntegrityError):
            await session.commit()


async def test_the_embedded_sqlite_database_migrates_itself(
    settings: Settings, tmp_path: Path
) -> None:
    development = settings.model_copy(
        update={
            "ENVIRONMENT": Environment.DEVELOPMENT,
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}",
        }
    )
    app = create_app(development)
    async with app.router.lifespan_context(app), app.state.engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    assert "users" in tables
    assert "alembic_version" in tables


async def test_shared_databases_are_not_migrated_at_start_up(settings: Settings) -> None:
    production_like = settings.model_copy(update={"ENVIRONMENT": Environment.PRODUCTION})
    assert production_like.migrate_on_start is False
    postgres = settings.model_copy(
        update={
            "DATABASE_URL": "postgresql+asyncpg://u@db/app",
            "ENVIRONMENT": Environment.DEVELOPMENT,
        }
    )
    assert postgres.migrate_on_start is False


async def test_a_refused_request_gives_its_connection_back_at_once(
    app: FastAPI, client: AsyncClient
) -> None:
    # The route reads the database, then raises: the error passes through the session
    # dependency, which must roll back and release the connection before the response,
    # not whenever the garbage collector gets to it.
    response = await client.post("/api/v1/auth/verify", json={"token": "not-a-real-token"})
    assert response.status_code == 400
    assert app.state.engine.pool.checkedout() == 0
