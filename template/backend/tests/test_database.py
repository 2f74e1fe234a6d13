"""The schema as migrations build it: upgrades, downgrades, no drift, working defaults."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from app.core.config import Environment, Settings
from app.core.migrations import alembic_config
from app.core.rbac import Role
from app.main import create_app
from app.models import User


def test_migrations_round_trip_without_drift(make_database: Callable[[], str]) -> None:
    config = alembic_config(make_database())
    command.upgrade(config, "head")
    # `alembic check` fails when the models and the migrations disagree.
    command.check(config)
    command.downgrade(config, "base")
    command.upgrade(config, "head")
    command.check(config)


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
