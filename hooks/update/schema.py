"""The database notice, after the template changed the models or migrations.

The migration heads are counted from the revision files themselves, without importing the
app: right after an update the project's environment may lack a package the template
added, and two heads (the template's new migration and one of the user's, both following
the same revision) are what the user most needs to hear about. Then the project's
migrations helper says whether the models and the migrations agree.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .lock import LOCK_FILE
from .outcome import Entry

# Where a template change means the database schema may have moved.
SCHEMA_PATHS = ("backend/app/models/", "backend/alembic/")
VERSIONS_DIR = "backend/alembic/versions"
# A change to either means the environment the user synced before the update is stale.
DEPENDENCY_FILES = frozenset({LOCK_FILE, "backend/pyproject.toml"})
HELPER_COMMAND = ("uv", "run", "--project", "backend", "python", "-m", "tools.migrations_helper")
SYNC_COMMAND = "uv sync --directory backend"
MERGE_COMMAND = 'uv run --directory backend alembic merge -m "merge migration heads" heads'
HELPER_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class Revision:
    id: str
    down_revisions: tuple[str, ...]
    path: str
    message: str


def literal_ids(node: ast.expr | None) -> tuple[str, ...]:
    try:
        value = ast.literal_eval(node) if node is not None else None
    except ValueError:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (tuple, list)):
        return tuple(item for item in value if isinstance(item, str))
    return ()


def read_revision(path: Path, relative: str) -> Revision | None:
    """The ids a revision file assigns at module level, read without running it."""
    try:
        module = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None
    values: dict[str, ast.expr | None] = {}
    for statement in module.body:
        if isinstance(statement, ast.Assign):
            for target in statement.targets:
                if isinstance(target, ast.Name):
                    values[target.id] = statement.value
        elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            values[statement.target.id] = statement.value
    ids = literal_ids(values.get("revision"))
    if len(ids) != 1:
        return None
    docstring = (ast.get_docstring(module) or "").strip()
    message = docstring.splitlines()[0] if docstring else ""
    return Revision(ids[0], literal_ids(values.get("down_revision")), relative, message)


def migration_heads(project: Path) -> list[Revision]:
    """The revisions no other revision follows, as Alembic would find them."""
    revisions = [
        revision
        for path in sorted((project / VERSIONS_DIR).glob("*.py"))
        if (revision := read_revision(path, f"{VERSIONS_DIR}/{path.name}")) is not None
    ]
    followed = {down for revision in revisions for down in revision.down_revisions}
    return [revision for revision in revisions if revision.id not in followed]


def schema_paths(entries: Iterable[Entry]) -> list[str]:
    return sorted({entry.path for entry in entries if entry.path.startswith(SCHEMA_PATHS)})


def heads_notice(heads: list[Revision], changed: list[str]) -> list[str]:
    lines = [
        (
            f"The migrations now have {len(heads)} heads, one at the end of each line of "
            'migrations, so `alembic upgrade head` and the tests stop with "Multiple head '
            'revisions are present" until a merge revision joins them:'
        ),
    ]
    for head in heads:
        whose = "the template's" if head.path in changed else "yours"
        message = f': "{head.message}"' if head.message else ""
        lines.append(f"  {head.id} ({whose}, {head.path}{message})")
    lines += [
        "",
        (
            "Sync the backend environment, join the heads (the merge revision changes no "
            "table), check that the models and the migrations agree, then bring your "
            "database to the new head:"
        ),
        f"  {SYNC_COMMAND}",
        f"  {MERGE_COMMAND}",
        f"  {' '.join(HELPER_COMMAND)}",
        "  uv run --directory backend alembic upgrade head",
    ]
    return lines


def schema_notice(project: Path, changed: list[str], stale_environment: bool) -> str:
    """What the update means for the database schema, never an error.

    The helper runs only where the backend's environment already exists (or
    UV_PROJECT_ENVIRONMENT names one), is not stale, and without syncing it: an update
    must not install packages or rewrite the lock file behind the user's back.
    """
    command = " ".join(HELPER_COMMAND)
    lines = [
        "The template changed the database models or migrations:",
        *(f"  {path}" for path in changed),
        "",
    ]
    heads = migration_heads(project)
    if len(heads) > 1:
        return "\n".join(lines + heads_notice(heads, changed))
    if stale_environment:
        lines.append(
            "The update changed the backend's dependencies: sync the backend environment "
            f"(`{SYNC_COMMAND}`), then run `{command}` to check that the models and the "
            "migrations still agree."
        )
        return "\n".join(lines)
    uv = shutil.which("uv")
    has_env = (project / "backend" / ".venv").is_dir() or bool(
        os.environ.get("UV_PROJECT_ENVIRONMENT")
    )
    helper = project / "tools" / "migrations_helper.py"
    if not (uv and has_env and helper.is_file()):
        lines.append(f"Check that they still agree: {command}")
        return "\n".join(lines)
    try:
        result = subprocess.run(
            [uv, "run", "--no-sync", *HELPER_COMMAND[2:]],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=HELPER_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        lines.append(f"The migrations helper could not run ({error}); run it yourself: {command}")
        return "\n".join(lines)
    lines.append(f"$ {command}")
    lines.append(result.stdout.rstrip() or result.stderr.rstrip()[-2000:])
    if result.returncode not in (0, 1):
        lines.append(f"(the helper could not finish; run it again yourself: {command})")
    return "\n".join(lines)


def stale_environment(entries: Iterable[Entry]) -> bool:
    return any(entry.path in DEPENDENCY_FILES for entry in entries)
