"""Run each generated project's own tooling: linters, types, migrations, tests, the app."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from template_tools import ProjectEnv
from test_render import COMBINATIONS

pytestmark = pytest.mark.slow

POSTGRES_SERVER = os.environ.get(
    "TEMPLATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_linters_and_types_are_clean(
    name: str, render: Callable[..., Path], project_env: ProjectEnv
) -> None:
    answers = COMBINATIONS[name]
    project = render(**answers)
    version = answers.get("python_version", "3.11")
    # ruff.toml sits at the project root and covers tools/ as well as backend/.
    project_env.run(project, "ruff", "check", "..", python_version=version)
    project_env.run(project, "ruff", "format", "--check", "..", python_version=version)
    project_env.run(project, "mypy", python_version=version, from_root=True)


# 3.11 runs the suite in the READMEs' commands and the project's CI workflow
# (test_readme_commands.py, test_infra.py), 3.13 after an upgrade (test_upgrade.py).
@pytest.mark.parametrize("version", ["3.12"])
def test_suite_passes_on_other_pythons(
    version: str, render: Callable[..., Path], project_env: ProjectEnv
) -> None:
    answers = next(a for a in COMBINATIONS.values() if a.get("python_version") == version)
    project = render(**answers)
    interpreter = project_env.run(
        project, "python", "-c", "import sys; print(sys.version)", python_version=version
    )
    assert interpreter.stdout.startswith(version)
    result = project_env.run(
        project, "pytest", "-q", "-p", "no:cacheprovider", python_version=version, from_root=True
    )
    assert " passed" in result.stdout


@pytest.fixture
def postgres_database(project_env: ProjectEnv) -> Iterator[str]:
    name = f"dayone_check_{os.getpid()}"
    admin = ["psql", POSTGRES_SERVER, "-q", "-c"]
    subprocess.run([*admin, f'DROP DATABASE IF EXISTS "{name}"'], check=True)
    subprocess.run([*admin, f'CREATE DATABASE "{name}"'], check=True)
    yield POSTGRES_SERVER.rsplit("/", 1)[0] + f"/{name}"
    subprocess.run([*admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], check=True)


def test_alembic_upgrade_and_check_on_sqlite(
    render: Callable[..., Path], project_env: ProjectEnv, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'app.db'}"
    project_env.run(render(), "alembic", "upgrade", "head", DATABASE_URL=database_url)
    result = project_env.run(render(), "alembic", "check", DATABASE_URL=database_url)
    assert "No new upgrade operations detected" in result.stdout + result.stderr


@pytest.mark.postgres
def test_alembic_upgrade_and_check_on_postgres(
    render: Callable[..., Path], project_env: ProjectEnv, postgres_database: str
) -> None:
    # The URL form Fly.io and Render hand out, accepted as it is.
    database_url = postgres_database.replace("postgresql://", "postgres://") + "?sslmode=disable"
    project_env.run(render(), "alembic", "upgrade", "head", DATABASE_URL=database_url)
    result = project_env.run(render(), "alembic", "check", DATABASE_URL=database_url)
    assert "No new upgrade operations detected" in result.stdout + result.stderr
