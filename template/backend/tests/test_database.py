"""The schema as migrations build it: upgrades, downgrades, no drift, working defaults."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from alembic import command
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.core.rbac import Role
from app.models import User
from tests.conftest import alembic_config


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
