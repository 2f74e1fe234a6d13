"""tools/migrations_helper.py: drift between the models and the migrations, and its fix.

Drift is made for real by checking a copy of backend/alembic with its newest migration
taken out; the project's own migrations never change.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import String

from app.core.config import BACKEND_DIR, PROJECT_DIR
from tools.migrations_helper import AGREE, DRIFT, FAILED, describe, main


def revisions(migrations: Path) -> dict[str, Path]:
    found = {}
    for script in (migrations / "versions").glob("*.py"):
        match = re.search(r'^revision: str = "([^"]+)"', script.read_text(), re.MULTILINE)
        if match:
            found[match.group(1)] = script
    return found


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    """A copy of the project's migrations, free to change."""
    copy = tmp_path / "alembic"
    shutil.copytree(BACKEND_DIR / "alembic", copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.fixture
def missing_newest(migrations: Path) -> Path:
    """The migrations without their newest revision: the models are ahead of them."""
    newest = max(revisions(migrations))
    revisions(migrations)[newest].unlink()
    return migrations


def test_the_models_and_the_migrations_agree(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == AGREE
    assert "The models and the migrations agree" in capsys.readouterr().out


def test_a_model_without_its_migration_is_drift(
    missing_newest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--migrations", str(missing_newest)]) == DRIFT
    out = capsys.readouterr().out
    assert "The models and the migrations disagree" in out
    assert "is in the models, but no migration" in out
    assert 'tools.migrations_helper --write -m "describe the change"' in out
    assert 'alembic revision --autogenerate -m "describe the change"' in out
    assert "alembic upgrade head" in out


def test_write_creates_the_missing_migration(
    missing_newest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = revisions(missing_newest)
    expected_id = str(int(max(before)) + 1).zfill(len(max(before)))
    assert main(["--migrations", str(missing_newest), "--write", "-m", "restore it"]) == AGREE
    assert "agree now" in capsys.readouterr().out
    after = revisions(missing_newest)
    assert set(after) - set(before) == {expected_id}
    assert after[expected_id].name == f"{expected_id}_restore_it.py"
    assert main(["--migrations", str(missing_newest)]) == AGREE


def test_write_without_drift_writes_nothing(migrations: Path) -> None:
    before = revisions(migrations)
    assert main(["--migrations", str(migrations), "--write", "-m", "nothing"]) == AGREE
    assert revisions(migrations) == before


def test_two_heads_are_drift_with_the_merge_command(
    migrations: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = sorted(revisions(migrations))
    branch_point = ids[-2]
    (migrations / "versions" / "9001_our_branch.py").write_text(
        f'"""A migration of ours that forks from {branch_point}."""\n\n'
        'revision = "9001"\n'
        f'down_revision = "{branch_point}"\n'
        "branch_labels = None\n"
        "depends_on = None\n\n\n"
        "def upgrade() -> None:\n    pass\n\n\n"
        "def downgrade() -> None:\n    pass\n",
        encoding="utf-8",
    )
    assert main(["--migrations", str(migrations)]) == DRIFT
    out = capsys.readouterr().out
    assert "The migrations have 2 heads" in out
    assert 'alembic merge -m "merge migration heads" heads' in out


def test_column_changes_read_as_sentences() -> None:
    # Alembic reports changes to one column as a list of tuples.
    changes: list[tuple[object, ...]] = [
        ("modify_type", None, "users", "full_name", {}, String(120), String(200)),
        ("modify_nullable", None, "users", "full_name", {}, True, False),
    ]
    assert describe(changes) == [
        "column users.full_name is VARCHAR(120) in the migrations but VARCHAR(200) in the models",
        "column users.full_name is nullable in the migrations, NOT NULL in the models",
    ]


def test_write_needs_a_message() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--write"])
    assert exit_info.value.code == 2


def test_a_check_that_cannot_run_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--migrations", str(tmp_path / "nowhere")]) == FAILED
    assert "The check could not run" in capsys.readouterr().err


def test_the_command_runs_from_the_project_root() -> None:
    # As documented: `python -m tools.migrations_helper` from the root, where `app` is not
    # importable until the helper puts backend/ on the path.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-m", "tools.migrations_helper"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == AGREE, result.stdout + result.stderr
    assert "agree" in result.stdout
