"""The migrations helper's word after the template changed the models or migrations."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from .outcome import Entry

# Where a template change means the database schema may have moved.
SCHEMA_PATHS = ("backend/app/models/", "backend/alembic/")
HELPER_COMMAND = ("uv", "run", "--project", "backend", "python", "-m", "tools.migrations_helper")
HELPER_TIMEOUT_SECONDS = 300


def schema_paths(entries: Iterable[Entry]) -> list[str]:
    return sorted({entry.path for entry in entries if entry.path.startswith(SCHEMA_PATHS)})


def schema_notice(project: Path, changed: list[str]) -> str:
    """What the migrations helper says about the models and migrations, never an error.

    The helper runs only where the backend's environment already exists (or
    UV_PROJECT_ENVIRONMENT names one) and without syncing it: an update must not install
    packages or rewrite the lock file behind the user's back.
    """
    command = " ".join(HELPER_COMMAND)
    lines = [
        "The template changed the database models or migrations:",
        *(f"  {path}" for path in changed),
        "",
    ]
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
