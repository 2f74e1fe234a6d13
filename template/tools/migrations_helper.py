"""Do the SQLAlchemy models and the Alembic migrations still describe the same schema?

    uv run --project backend python -m tools.migrations_helper                  # check
    uv run --project backend python -m tools.migrations_helper --write -m "add nickname"

The check builds a scratch SQLite database, upgrades it to head with the project's own
migrations, then runs Alembic's autogenerate comparison between that database and the
models. It prints each difference in plain words and the commands that fix it; `--write`
creates the migration itself (from the same scratch database, so your own database need
not be at head) and checks again.

Exit status: 0 when the models and the migrations agree (or --write made them agree),
1 when they differ, 2 when the check could not run. It never changes your database, and
`copier update` runs it only to inform: its verdict never fails an update.

It runs in-process rather than through the `alembic` command: backend/ (where `app`
lives) goes on sys.path, so that the comparison goes through backend/alembic/env.py and
the app's settings exactly as `alembic` itself does, and the differences come back as
data to describe rather than text to parse. The heads are counted first, from the
revision scripts alone, so that two heads are reported even where the app cannot be
imported (an environment older than backend/uv.lock, typically after `copier update`).

Revisions are ordered by their graph (each one's down_revision), never by their ids:
Alembic's own ids are random hex, and a project mixes them with the template's numbered
ones and with merge revisions.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import autogenerate, command
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory

BACKEND_DIR = Path(__file__).resolve().parents[1] / "backend"

AGREE, DRIFT, FAILED = 0, 1, 2
CHECK_COMMAND = "uv run --project backend python -m tools.migrations_helper"


@dataclass(frozen=True)
class Verdict:
    heads: tuple[str, ...]
    differences: tuple[str, ...]

    @property
    def drift(self) -> bool:
        return len(self.heads) > 1 or bool(self.differences)


def put_backend_on_path() -> None:
    """Make `app` importable, for env.py and for revision scripts that import from it."""
    if str(BACKEND_DIR) not in sys.path:
        sys.path.insert(0, str(BACKEND_DIR))


def script_directory(migrations: Path | None) -> ScriptDirectory:
    """The revision scripts, read with backend/alembic.ini alone: the app is not imported."""
    put_backend_on_path()
    config = Config(str(BACKEND_DIR / "alembic.ini"))
    if migrations is not None:
        config.set_main_option("script_location", str(migrations))
    return ScriptDirectory.from_config(config)


def scratch_config(database_dir: Path, migrations: Path | None) -> Config:
    """Alembic's configuration for a scratch SQLite database in `database_dir`."""
    put_backend_on_path()
    # Imported here: `app` is importable only once backend/ is on the path.
    from app.core.migrations import alembic_config

    config = alembic_config(f"sqlite+aiosqlite:///{database_dir / 'scratch.db'}")
    if migrations is not None:
        config.set_main_option("script_location", str(migrations))
    return config


def autogenerate_diffs(config: Config) -> list[Any]:
    """Alembic's autogenerate comparison of the database `config` names with the models.

    This is what `alembic check` does, except that the differences are returned instead
    of being raised as one message.
    """
    script = ScriptDirectory.from_config(config)
    revision_context = autogenerate.RevisionContext(
        config,
        script,
        {
            "message": None,
            "autogenerate": True,
            "sql": False,
            "head": "head",
            "splice": False,
            "branch_label": None,
            "version_path": None,
            "rev_id": None,
            "depends_on": None,
        },
    )

    def compare(revision: Any, context: MigrationContext) -> list[Any]:
        revision_context.run_autogenerate(revision, context)
        return []

    with EnvironmentContext(
        config,
        script,
        fn=compare,
        as_sql=False,
        template_args=revision_context.template_args,
        revision_context=revision_context,
    ):
        script.run_env()
    diffs: list[Any] = []
    for upgrade_ops in revision_context.generated_revisions[-1].upgrade_ops_list:
        diffs.extend(upgrade_ops.as_diffs())
    return diffs


def _nullable(value: Any) -> str:
    return "nullable" if value else "NOT NULL"


def describe(diff: Any) -> list[str]:
    """One plain sentence per difference in Alembic's diff tuple."""
    if isinstance(diff, list):
        return [sentence for item in diff for sentence in describe(item)]
    kind = diff[0]
    if kind in {"add_table", "remove_table"}:
        table = diff[1].name
        if kind == "add_table":
            return [f"table {table} is in the models, but no migration creates it"]
        return [f"table {table} is created by the migrations, but no model defines it"]
    if kind in {"add_column", "remove_column"}:
        _, _schema, table, column = diff
        if kind == "add_column":
            return [f"column {table}.{column.name} is in the models, but no migration adds it"]
        return [f"column {table}.{column.name} is in the migrations, but not in the models"]
    if kind in {"add_index", "remove_index"}:
        index = diff[1]
        columns = ", ".join(str(getattr(col, "name", col)) for col in index.expressions)
        where = f"{index.name} on {index.table.name}({columns})"
        if kind == "add_index":
            return [f"index {where} is in the models, but no migration creates it"]
        return [f"index {where} is created by the migrations, but not in the models"]
    if kind in {"add_constraint", "remove_constraint", "add_fk", "remove_fk"}:
        constraint = diff[1]
        label = "foreign key" if kind.endswith("_fk") else "constraint"
        name = constraint.name or "(unnamed)"
        table = constraint.table.name
        if kind.startswith("add_"):
            return [f"{label} {name} on {table} is in the models, but not in the migrations"]
        return [f"{label} {name} on {table} is in the migrations, but not in the models"]
    if kind.startswith("modify_"):
        _, _schema, table, column, _existing, old, new = diff
        where = f"column {table}.{column}"
        if kind == "modify_type":
            return [f"{where} is {old} in the migrations but {new} in the models"]
        if kind == "modify_nullable":
            old_state, new_state = _nullable(old), _nullable(new)
            return [f"{where} is {old_state} in the migrations, {new_state} in the models"]
        if kind == "modify_default":
            return [f"{where} has a different server default in the models than in the migrations"]
        return [f"{where} has a different comment in the models than in the migrations"]
    return [f"{kind.replace('_', ' ')}: {', '.join(str(part) for part in diff[1:])}"]


def check(config: Config) -> Verdict:
    """Upgrade the (scratch) database `config` names to head and compare it with the models."""
    heads = tuple(ScriptDirectory.from_config(config).get_heads())
    if len(heads) > 1:
        # With two heads there is no single "head" to compare against; joining them
        # comes first.
        return Verdict(heads, ())
    command.upgrade(config, "head")
    differences = tuple(
        sentence for diff in autogenerate_diffs(config) for sentence in describe(diff)
    )
    return Verdict(heads, differences)


def next_revision_id(config: Config) -> str | None:
    """The next number of a purely numbered series (0001, 0002, ...), else None.

    The new revision only needs an id no other one has: its place in the history is its
    down_revision. Once any id is not a number (Alembic's hex ids, a merge revision),
    None leaves the choice to Alembic, which makes a random one.
    """
    ids = [rev.revision for rev in ScriptDirectory.from_config(config).walk_revisions()]
    if not ids or not all(rev.isdigit() for rev in ids):
        return None
    width = max(len(rev) for rev in ids)
    return str(max(int(rev) for rev in ids) + 1).zfill(width)


def write_revision(config: Config, message: str) -> Path:
    """Create the migration that brings the (scratch, at head) database to the models."""
    written = command.revision(
        config, message=message, autogenerate=True, rev_id=next_revision_id(config)
    )
    scripts = written if isinstance(written, list) else [written]
    paths = [Path(script.path) for script in scripts if script is not None]
    if not paths:
        raise RuntimeError("Alembic wrote no revision file")
    return paths[0]


def first_line(script: Script) -> str:
    """The first line of the revision's docstring: its message, as Alembic writes it."""
    lines = script.doc.splitlines()
    return lines[0] if lines else "(no message)"


def report_heads(heads: Sequence[Script]) -> None:
    count = len(heads)
    print(
        f"The migrations have {count} heads: their history splits into {count} lines, as "
        "happens when a migration of yours meets one from a template update. The heads:"
    )
    for head in heads:
        print(f"  {head.revision}  {Path(head.path).name}  {first_line(head)}")
    print("Join them with a merge revision first, then run this check again:")
    print('  uv run --directory backend alembic merge -m "merge migration heads" heads')
    print(f"  {CHECK_COMMAND}")


def report_drift(differences: Sequence[str]) -> None:
    count = len(differences)
    print(f"The models and the migrations disagree ({count} difference{'s' * (count != 1)}):")
    for sentence in differences:
        print(f"  - {sentence}")
    print()
    print("Create the missing migration from the project root with:")
    print(f'  {CHECK_COMMAND} --write -m "describe the change"')
    print("or with Alembic itself, against the database in DATABASE_URL (upgraded first):")
    print("  uv run --directory backend alembic upgrade head")
    print('  uv run --directory backend alembic revision --autogenerate -m "describe the change"')
    print("Review the new file in backend/alembic/versions/, then apply it to your database:")
    print("  uv run --directory backend alembic upgrade head")


def run(arguments: argparse.Namespace) -> int:
    migrations: Path | None = arguments.migrations
    scripts = script_directory(migrations)
    heads = [scripts.get_revision(head) for head in scripts.get_heads()]
    if len(heads) > 1:
        report_heads(heads)
        return DRIFT
    with tempfile.TemporaryDirectory(prefix="migrations-helper-") as scratch:
        config = scratch_config(Path(scratch), migrations)
        verdict = check(config)
        if not verdict.differences:
            head = verdict.heads[0] if verdict.heads else "no revision"
            print(f"The models and the migrations agree (head: {head}); no migration is needed.")
            return AGREE
        if not arguments.write:
            report_drift(verdict.differences)
            return DRIFT
        path = write_revision(config, arguments.message)
        print(f"Wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    with tempfile.TemporaryDirectory(prefix="migrations-helper-") as scratch:
        after = check(scratch_config(Path(scratch), migrations))
    if after.drift:
        print("The new migration does not cover every difference:")
        report_drift(after.differences)
        return DRIFT
    print("The models and the migrations agree now. Review the new migration, then apply it:")
    print("  uv run --directory backend alembic upgrade head")
    return AGREE


def remedy(error: Exception) -> str:
    """What to do about the error that stopped the check."""
    if isinstance(error, ImportError) and error.name:
        # A module the code needs and the environment lacks: after a `copier update` added
        # a dependency, backend/uv.lock has it, the existing environment not yet.
        return (
            f"The backend environment lacks the module {error.name} (it is older than "
            "backend/uv.lock): sync the backend environment (`uv sync --directory backend`), "
            f"then run {CHECK_COMMAND} again."
        )
    return f"Fix the problem above, then run {CHECK_COMMAND} again."


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.migrations_helper",
        description="Check that the SQLAlchemy models and the Alembic migrations agree.",
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="create the missing migration (needs -m) instead of only reporting it",
    )
    parser.add_argument("-m", "--message", help="the new migration's message, with --write")
    parser.add_argument(
        "--migrations",
        type=Path,
        default=None,
        help="the Alembic scripts directory to check (default: backend/alembic)",
    )
    arguments = parser.parse_args(argv)
    if arguments.write and not arguments.message:
        parser.error('--write needs a message: --write -m "describe the change"')
    try:
        return run(arguments)
    except Exception as error:  # noqa: BLE001 (a report, never a crash: see the docstring)
        print(f"The check could not run: {type(error).__name__}: {error}", file=sys.stderr)
        print(remedy(error), file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
