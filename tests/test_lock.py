"""The lock file every generated project ships is the one uv would keep for its pyproject.toml.

A project installs exactly what its backend/uv.lock pins (the Dockerfile and CI run
`uv sync --locked`), so the lock must match the rendered pyproject.toml for every answer
that reaches either file: the project's name and its Python version.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from template_tools import TEMPLATE_DIR, UV, ProjectEnv, maintainer_command

RELOCK = "uv run python scripts/relock.py"
LOCK_TEMPLATE = "template/backend/uv.lock.jinja"

ANSWERS = {
    "default": {},
    "double underscore, 3.12": {"project_slug": "acme__billing", "python_version": "3.12"},
    "3.13": {"project_slug": "ledger2", "python_version": "3.13"},
}


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_the_shipped_lock_is_current_for_the_rendered_pyproject(
    name: str, render: Callable[..., Path], project_env: ProjectEnv
) -> None:
    answers = ANSWERS[name]
    backend = render(**answers) / "backend"
    version = str(answers.get("python_version", "3.11"))
    lock = tomllib.loads((backend / "uv.lock").read_text(encoding="utf-8"))
    pyproject = tomllib.loads((backend / "pyproject.toml").read_text(encoding="utf-8"))
    assert lock["requires-python"] == pyproject["project"]["requires-python"] == f">={version}"
    [project] = [package for package in lock["package"] if package["source"] == {"virtual": "."}]
    # The name as package tools normalise it (PEP 503).
    assert project["name"] == re.sub(r"[-_.]+", "-", pyproject["project"]["name"])

    # `--check` fails when resolving pyproject.toml afresh would change the lock.
    result = subprocess.run(
        [UV, "lock", "--check"],
        cwd=backend,
        env=project_env.env(version),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (
        f"backend/uv.lock no longer matches backend/pyproject.toml: run `{RELOCK}`\n"
        f"{result.stdout}{result.stderr}"
    )


def test_the_readme_relock_command_finds_the_lock_current(tmp_path: Path) -> None:
    """The maintainer's command, as the README gives it, in a clone of the working tree."""
    clone = tmp_path / "template"
    before = (TEMPLATE_DIR / LOCK_TEMPLATE).read_bytes()
    output = maintainer_command(RELOCK, clone, timeout=300)
    assert f"{LOCK_TEMPLATE}: unchanged" in output
    assert (clone / LOCK_TEMPLATE).read_bytes() == before
