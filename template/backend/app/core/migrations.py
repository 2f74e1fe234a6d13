"""Apply Alembic migrations from code: at start-up on the embedded SQLite default, and in
tests."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from app.core.config import BACKEND_DIR, Settings
from app.core.db import create_engine


def alembic_config(database_url: str) -> Config:
    config = Config(str(BACKEND_DIR / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", database_url)
    # The app has configured logging already; Alembic's file config would replace it.
    config.attributes["configure_logging"] = False
    return config


def upgrade_to_head(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "head")


def head_revisions() -> tuple[str, ...]:
    """The revisions no other one follows: one, unless two lines of migrations (the
    template's and yours, after an update) wait for a merge revision."""
    return tuple(ScriptDirectory.from_config(alembic_config("")).get_heads())


async def current_revision(settings: Settings) -> str | None:
    """The revision the database is at; None for a database never migrated."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(read)
    finally:
        await engine.dispose()
