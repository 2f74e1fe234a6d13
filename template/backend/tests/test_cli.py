"""`python -m app.cli create-owner`: the first owner, with no default password anywhere."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import cli
from app.core import migrations
from app.core.clock import as_utc, utcnow
from app.core.config import Environment, Settings, get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.migrations import upgrade_to_head
from app.core.rbac import Role
from app.core.security import password_hash
from app.core.storage import KEY_PREFIX
from app.models import AuditEvent, AuditType, User
from app.services import audit_service
from tests.fixtures import TEST_SECRET_KEY
from tests.support import PASSWORD, password_hash_of_password

BACKEND_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture
def database(make_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh migrated database that the CLI's settings point at."""
    url = make_database()
    upgrade_to_head(url)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("ENVIRONMENT", Environment.TEST.value)
    monkeypatch.setenv("SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.delenv(cli.PASSWORD_VARIABLE, raising=False)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def in_database(url: str, work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
    """Run `work` in a transaction on the database at `url`, from synchronous code."""

    async def run() -> Any:
        settings = Settings(_env_file=None, DATABASE_URL=url, SECRET_KEY=TEST_SECRET_KEY)
        engine = create_engine(settings)
        try:
            async with create_sessionmaker(engine).begin() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def users(url: str) -> list[User]:
    async def fetch(session: AsyncSession) -> list[User]:
        return list(await session.scalars(select(User).order_by(User.email)))

    found: list[User] = in_database(url, fetch)
    return found


def add_member(url: str, email: str) -> None:
    async def insert(session: AsyncSession) -> None:
        session.add(User(email=email, hashed_password=password_hash_of_password()))

    in_database(url, insert)


def test_creates_a_verified_owner_from_the_environment(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(cli.PASSWORD_VARIABLE, PASSWORD)
    assert cli.main(["create-owner", "--email", "Boss@Example.com"]) == 0
    assert "Created the owner account boss@example.com" in capsys.readouterr().out
    (owner,) = users(database)
    assert (owner.email, owner.role, owner.is_verified) == ("boss@example.com", Role.OWNER, True)
    assert password_hash.verify(PASSWORD, owner.hashed_password)
    assert owner.hashed_password.startswith("$argon2id$")


def test_the_email_defaults_to_owner_email(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli.PASSWORD_VARIABLE, PASSWORD)
    monkeypatch.setenv("OWNER_EMAIL", "founder@example.com")
    assert cli.main(["create-owner"]) == 0
    assert [user.email for user in users(database)] == ["founder@example.com"]


def test_asks_for_the_password_twice_in_a_terminal(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter([PASSWORD, "something else entirely"])
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(getpass, "getpass", lambda prompt: next(answers))
    assert cli.main(["create-owner", "--email", "boss@example.com"]) == 1
    assert "The two passwords differ" in capsys.readouterr().err
    assert users(database) == []


def test_without_a_terminal_or_variable_it_says_what_to_set(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    assert cli.main(["create-owner", "--email", "boss@example.com"]) == 1
    assert cli.PASSWORD_VARIABLE in capsys.readouterr().err
    assert users(database) == []


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("boss@example.com", "password123", "common password"),
        ("boss@example.com", "short", "at least 8"),
        ("not an email", PASSWORD, "not a valid email address"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    database: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    email: str,
    password: str,
    message: str,
) -> None:
    monkeypatch.setenv(cli.PASSWORD_VARIABLE, password)
    assert cli.main(["create-owner", "--email", email]) == 1
    assert message in capsys.readouterr().err
    assert users(database) == []


def test_an_existing_account_is_promoted_with_its_password_kept(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    add_member(database, "ada@example.com")
    monkeypatch.setenv(cli.PASSWORD_VARIABLE, "an entirely different one")
    assert cli.main(["create-owner", "--email", "ada@example.com"]) == 0
    assert "now an owner; its password is unchanged" in capsys.readouterr().out
    (user,) = users(database)
    assert user.role is Role.OWNER
    assert password_hash.verify(PASSWORD, user.hashed_password)


def test_if_none_does_nothing_once_an_owner_exists(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(cli.PASSWORD_VARIABLE, PASSWORD)
    assert cli.main(["create-owner", "--email", "first@example.com", "--if-none"]) == 0
    assert cli.main(["create-owner", "--email", "second@example.com", "--if-none"]) == 0
    assert "An owner exists already (first@example.com)" in capsys.readouterr().out
    assert [user.email for user in users(database)] == ["first@example.com"]


def test_the_command_runs_as_documented_on_a_fresh_embedded_database(tmp_path: Path) -> None:
    # A real process on a database that does not exist yet, as on a developer's first
    # day: the embedded SQLite database is created and migrated, then the owner added.
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "ENVIRONMENT": "development",
        "SECRET_KEY": TEST_SECRET_KEY,
        cli.PASSWORD_VARIABLE: PASSWORD,
    }
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "create-owner", "--email", "boss@example.com"],
        cwd=BACKEND_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert [user.email for user in users(url)] == ["boss@example.com"]


def test_owner_says_who_the_owner_is_in_words_and_in_json(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(cli.PASSWORD_VARIABLE, PASSWORD)
    # No owner: exit status 3 for shells, `null` (and 0) for scripts that read JSON.
    assert cli.main(["owner"]) == cli.NO_OWNER
    assert "There is no active owner yet." in capsys.readouterr().out
    assert cli.main(["owner", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"owner": None}
    assert cli.main(["create-owner", "--email", "boss@example.com"]) == 0
    capsys.readouterr()
    assert cli.main(["owner"]) == 0
    assert capsys.readouterr().out.strip() == "boss@example.com"
    assert cli.main(["owner", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"owner": "boss@example.com"}


def test_migrate_with_two_heads_says_how_to_join_them(
    database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The migrations as they are after an update: a revision of the user's and one of the
    # template's both continue from the same one, whatever the history before it.
    scripts = tmp_path / "alembic"
    shutil.copytree(BACKEND_DIR / "alembic", scripts, ignore=shutil.ignore_patterns("__pycache__"))
    config = migrations.alembic_config(database)
    config.set_main_option("script_location", str(scripts))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    for rev_id in ("9001", "1a2b3c4d5e6f"):
        command.revision(config, message=f"fork {rev_id}", rev_id=rev_id, head=head, splice=True)

    def scratch_config(url: str) -> Config:
        forked = migrations_config(url)
        forked.set_main_option("script_location", str(scripts))
        return forked

    migrations_config = migrations.alembic_config
    monkeypatch.setattr(migrations, "alembic_config", scratch_config)
    assert cli.main(["migrate"]) == 1
    error = capsys.readouterr().err
    assert "The migrations have 2 heads (1a2b3c4d5e6f, 9001)" in error
    assert cli.MERGE_HEADS_COMMAND in error


def test_sweep_storage_removes_an_old_object_no_file_refers_to(
    database: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    uploads = tmp_path / "uploads"
    monkeypatch.setenv("UPLOAD_DIR", str(uploads))
    monkeypatch.setenv("STORAGE_SWEEP_GRACE_SECONDS", "60")
    orphan = uploads / KEY_PREFIX / str(uuid.uuid4())
    fresh = uploads / KEY_PREFIX / str(uuid.uuid4())
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left by a process that died")
    fresh.write_bytes(b"an upload saving its row this very moment")
    an_hour_ago = time.time() - 3600
    os.utime(orphan, (an_hour_ago, an_hour_ago))
    get_settings.cache_clear()
    assert cli.main(["sweep-storage"]) == 0
    assert "Removed 1 object(s) no file referred to, 0 file(s)" in capsys.readouterr().out
    assert not orphan.exists()
    assert fresh.exists()


def test_prune_deletes_old_audit_events_and_says_how_many(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def add_events(session: AsyncSession) -> None:
        for age in (40, 10):
            event = audit_service.record(session, AuditType.LOGOUT, None)
            event.created_at = utcnow() - timedelta(days=age)

    in_database(database, add_events)
    monkeypatch.setenv("AUDIT_RETENTION_DAYS", "30")
    get_settings.cache_clear()
    assert cli.main(["prune"]) == 0
    assert (
        "Deleted 1 audit event(s) older than 30 days (AUDIT_RETENTION_DAYS) and 0 expired"
        in capsys.readouterr().out
    )

    async def ages(session: AsyncSession) -> list[int]:
        return [
            (utcnow() - as_utc(moment)).days
            for moment in await session.scalars(select(AuditEvent.created_at))
        ]

    assert in_database(database, ages) == [10]


def test_create_owner_is_an_audit_event(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli.PASSWORD_VARIABLE, PASSWORD)
    assert cli.main(["create-owner", "--email", "boss@example.com"]) == 0
    add_member(database, "second@example.com")
    assert cli.main(["create-owner", "--email", "second@example.com"]) == 0

    async def events(session: AsyncSession) -> list[tuple[str, dict[str, Any]]]:
        rows = await session.scalars(select(AuditEvent).order_by(AuditEvent.created_at))
        return [(row.type, row.details) for row in rows if row.type.startswith("user.")]

    assert in_database(database, events) == [
        ("user.registered", {"role": "owner", "by": "cli"}),
        ("user.role_changed", {"from": "member", "to": "owner", "by": "cli"}),
    ]

    async def deactivate(session: AsyncSession) -> None:
        owner = await session.scalar(select(User).where(User.email == "boss@example.com"))
        assert owner is not None
        owner.is_active = False

    in_database(database, deactivate)
    assert cli.main(["create-owner", "--email", "boss@example.com"]) == 0
    assert in_database(database, events)[-1] == ("user.activated", {"by": "cli"})
