"""tools/migrations_helper.py: drift between the models and the migrations, and its fix.

The checks run on copies of backend/alembic, laid out as a project's history grows: as
shipped (numbered revisions), with a revision of the user's (a random hex id, as
`alembic revision` makes), with a merge revision (as `alembic merge heads` makes) and
with a numbered template revision after the user's. Drift is made for real by adding a
revision on the head that creates a table no model defines; the project's own migrations
never change. Every revision's place comes from the graph (down_revision), never from
its id.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from sqlalchemy import String

from app.core.config import BACKEND_DIR, PROJECT_DIR
from tools.migrations_helper import AGREE, DRIFT, FAILED, describe, main

# Ids as Alembic makes them (the last 12 hex digits of a uuid4), fixed for the tests.
USER_REVISION = "3f9c2a7b1d4e"
MERGE_REVISION = "b7e4d2c9a1f0"
FORK_REVISION = "9d3e7a5c2b1f"
PROBE_REVISION = "e5a8c3f1b9d2"

UPGRADE_STUB = "def upgrade() -> None:\n    pass\n"
DOWNGRADE_STUB = "def downgrade() -> None:\n    pass\n"
PROBE_UPGRADE = (
    "def upgrade() -> None:\n"
    '    op.create_table("helper_probe", sa.Column("id", sa.Integer(), primary_key=True))\n'
)
PROBE_DOWNGRADE = 'def downgrade() -> None:\n    op.drop_table("helper_probe")\n'


def alembic_config(migrations: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    return config


def graph(migrations: Path) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(migrations))


def revision_ids(migrations: Path) -> set[str]:
    return {script.revision for script in graph(migrations).walk_revisions()}


def single_head(migrations: Path) -> Script:
    scripts = graph(migrations)
    head = scripts.get_current_head()
    assert head is not None
    return scripts.get_revision(head)


def next_number(migrations: Path) -> str:
    """The id the template gives its next revision: one more than its highest number."""
    numbers = [int(rev) for rev in revision_ids(migrations) if rev.isdigit()]
    return str(max(numbers) + 1).zfill(4)


def add_revision(
    migrations: Path, rev_id: str, message: str, parent: str | Sequence[str] | None = None
) -> Script:
    """What `alembic revision` writes, or `alembic merge` for several parents.

    The new revision continues from `parent` (a down_revision), by default from the
    current head(s).
    """
    config = alembic_config(migrations)
    heads = graph(migrations).get_heads()
    if isinstance(parent, str):
        parent = [parent]
    parents = list(heads if parent is None else parent)
    # Continuing from a revision that is not a head starts a branch: Alembic's --splice.
    splice = not set(parents) <= set(heads)
    if len(parents) > 1:
        merge = command.merge(config, parents, message=message, rev_id=rev_id, splice=splice)
        assert merge is not None
        return merge
    revision = command.revision(
        config, message=message, head=parents[0], splice=splice, rev_id=rev_id
    )
    assert isinstance(revision, Script)
    return revision


def add_probe_table(migrations: Path) -> Script:
    """A revision on the head(s) that creates helper_probe, a table no model defines."""
    ids = revision_ids(migrations)
    rev_id = next_number(migrations) if all(rev.isdigit() for rev in ids) else PROBE_REVISION
    probe = add_revision(migrations, rev_id, "add helper probe")
    path = Path(probe.path)
    text = path.read_text(encoding="utf-8")
    assert text.count(UPGRADE_STUB) == text.count(DOWNGRADE_STUB) == 1
    path.write_text(
        text.replace(UPGRADE_STUB, PROBE_UPGRADE).replace(DOWNGRADE_STUB, PROBE_DOWNGRADE),
        encoding="utf-8",
    )
    return probe


def as_shipped(migrations: Path) -> None:
    pass


def with_user_revision(migrations: Path) -> None:
    add_revision(migrations, USER_REVISION, "a change of yours")


def with_merge(migrations: Path) -> None:
    # The user's revision and the template's next one both continue from the shipped
    # head; the user joins them as the helper says.
    shipped = single_head(migrations).revision
    add_revision(migrations, USER_REVISION, "a change of yours")
    add_revision(migrations, next_number(migrations), "a template change", parent=shipped)
    add_revision(migrations, MERGE_REVISION, "merge migration heads")


def with_template_revision_after_the_users(migrations: Path) -> None:
    add_revision(migrations, USER_REVISION, "a change of yours")
    add_revision(migrations, next_number(migrations), "a template change")


def with_template_revision_after_the_merge(migrations: Path) -> None:
    with_merge(migrations)
    add_revision(migrations, next_number(migrations), "a later template change")


LAYOUTS: dict[str, Callable[[Path], None]] = {
    "as-shipped": as_shipped,
    "user-hex": with_user_revision,
    "user-hex-merged": with_merge,
    "numbered-after-hex": with_template_revision_after_the_users,
    "numbered-after-merge": with_template_revision_after_the_merge,
}


@pytest.fixture
def copied(tmp_path: Path) -> Path:
    """A copy of the project's migrations, free to change."""
    copy = tmp_path / "alembic"
    shutil.copytree(BACKEND_DIR / "alembic", copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.fixture(params=list(LAYOUTS))
def migrations(copied: Path, request: pytest.FixtureRequest) -> Path:
    """The copy, laid out as one of LAYOUTS; the models and the migrations still agree."""
    LAYOUTS[request.param](copied)
    return copied


def test_the_merge_layout_joins_the_users_line_and_the_templates(copied: Path) -> None:
    shipped = single_head(copied).revision
    template_revision = next_number(copied)
    with_merge(copied)
    merge = single_head(copied)
    assert merge.revision == MERGE_REVISION
    assert isinstance(merge.down_revision, tuple)
    assert set(merge.down_revision) == {USER_REVISION, template_revision}
    for parent in merge.down_revision:
        assert graph(copied).get_revision(parent).down_revision == shipped


def test_the_models_and_the_migrations_agree(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == AGREE
    assert "The models and the migrations agree" in capsys.readouterr().out


def test_every_layout_agrees_at_its_head(
    migrations: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--migrations", str(migrations)]) == AGREE
    out = capsys.readouterr().out
    assert f"The models and the migrations agree (head: {single_head(migrations).revision})" in out


def test_a_table_no_model_defines_is_drift(
    migrations: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_probe_table(migrations)
    assert main(["--migrations", str(migrations)]) == DRIFT
    out = capsys.readouterr().out
    assert "The models and the migrations disagree (1 difference)" in out
    assert "table helper_probe is created by the migrations, but no model defines it" in out
    assert 'tools.migrations_helper --write -m "describe the change"' in out
    assert 'alembic revision --autogenerate -m "describe the change"' in out
    assert "alembic upgrade head" in out


def test_write_creates_the_missing_migration(
    migrations: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head = add_probe_table(migrations).revision
    before_ids = revision_ids(migrations)
    before_files = set((migrations / "versions").glob("*.py"))
    numbered = all(rev.isdigit() for rev in before_ids)
    expected_id = next_number(migrations) if numbered else None
    assert main(["--migrations", str(migrations), "--write", "-m", "drop helper probe"]) == AGREE
    assert "agree now" in capsys.readouterr().out
    written = single_head(migrations)
    assert revision_ids(migrations) - before_ids == {written.revision}
    assert set((migrations / "versions").glob("*.py")) - before_files == {Path(written.path)}
    assert written.down_revision == head
    assert Path(written.path).name == f"{written.revision}_drop_helper_probe.py"
    text = Path(written.path).read_text(encoding="utf-8")
    assert "op.drop_table(" in text
    assert "helper_probe" in text
    if expected_id is not None:
        # A purely numbered series goes on numbered; otherwise Alembic picks the id.
        assert written.revision == expected_id
    assert main(["--migrations", str(migrations)]) == AGREE


def test_write_without_drift_writes_nothing(migrations: Path) -> None:
    before = set((migrations / "versions").glob("*.py"))
    assert main(["--migrations", str(migrations), "--write", "-m", "nothing"]) == AGREE
    assert set((migrations / "versions").glob("*.py")) == before


def fork(migrations: Path) -> None:
    """A revision of the user's that continues from where the head does: a second head."""
    add_revision(
        migrations, FORK_REVISION, "our branch", parent=single_head(migrations).down_revision
    )
    assert len(graph(migrations).get_heads()) == 2


def assert_two_heads_reported(migrations: Path, out: str) -> None:
    assert "The migrations have 2 heads" in out
    assert 'alembic merge -m "merge migration heads" heads' in out
    scripts = graph(migrations)
    lines = out.splitlines()
    for head in map(scripts.get_revision, scripts.get_heads()):
        # Each head by its file and its message, the first line of its docstring.
        named = (Path(head.path).name, head.doc.splitlines()[0])
        assert any(all(part in line for part in named) for line in lines), (named, out)


def test_two_heads_are_drift_with_the_merge_command(
    migrations: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fork(migrations)
    assert main(["--migrations", str(migrations)]) == DRIFT
    assert_two_heads_reported(migrations, capsys.readouterr().out)


def test_two_heads_are_reported_where_the_app_cannot_be_imported(
    copied: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with_user_revision(copied)
    fork(copied)
    # As in an environment older than backend/uv.lock: importing the app fails.
    monkeypatch.setitem(sys.modules, "app.core.migrations", None)
    assert main(["--migrations", str(copied)]) == DRIFT
    assert_two_heads_reported(copied, capsys.readouterr().out)


def import_a_missing_module_in_env(migrations: Path) -> None:
    env = migrations / "env.py"
    text = env.read_text(encoding="utf-8")
    broken = text.replace("\nimport asyncio\n", "\nimport asyncio\n\nimport helper_absent\n")
    assert broken != text
    env.write_text(broken, encoding="utf-8")


def import_a_missing_module_in_a_revision(migrations: Path) -> None:
    path = Path(add_revision(migrations, USER_REVISION, "a change of yours").path)
    text = path.read_text(encoding="utf-8")
    broken = text.replace(
        "\nfrom alembic import op\n", "\nimport helper_absent\nfrom alembic import op\n"
    )
    assert broken != text
    path.write_text(broken, encoding="utf-8")


@pytest.mark.parametrize(
    "break_environment", [import_a_missing_module_in_env, import_a_missing_module_in_a_revision]
)
def test_a_stale_environment_is_named_with_its_fix(
    copied: Path, break_environment: Callable[[Path], None], capsys: pytest.CaptureFixture[str]
) -> None:
    break_environment(copied)
    assert main(["--migrations", str(copied)]) == FAILED
    err = capsys.readouterr().err
    assert "ModuleNotFoundError: No module named 'helper_absent'" in err
    assert (
        "The backend environment lacks the module helper_absent (it is older than "
        "backend/uv.lock): sync the backend environment (`uv sync --directory backend`), "
        "then run uv run --project backend python -m tools.migrations_helper again."
    ) in err
    assert "Fix the problem above" not in err


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
    err = capsys.readouterr().err
    assert err.startswith("The check could not run")
    assert "Fix the problem above, then run" in err


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
