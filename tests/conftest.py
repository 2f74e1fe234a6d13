"""Shared fixtures for the template's tests.

`render(**answers)` renders the template (the working tree, uncommitted changes
included) with the given answers on top of the defaults, once per distinct set of
answers per session. `project_env` runs a generated project's own commands through uv
against one virtual environment per Python version, so dependencies install once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from copier import run_copy

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = TEMPLATE_DIR.parent / "shared" / "reference"

Answers = dict[str, Any]


def copy_template(destination: Path, answers: Answers, **options: Any) -> None:
    """Render the template non-interactively, as `copier copy --defaults --trust`."""
    run_copy(
        str(TEMPLATE_DIR),
        str(destination),
        data={"init_git": False, **answers},
        defaults=True,
        unsafe=True,
        vcs_ref="HEAD",
        quiet=True,
        **options,
    )


@pytest.fixture(scope="session")
def render(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    cache: dict[tuple[tuple[str, str], ...], Path] = {}

    def _render(**answers: Any) -> Path:
        key = tuple(sorted((name, repr(value)) for name, value in answers.items()))
        if key not in cache:
            destination = tmp_path_factory.mktemp("project") / "project"
            copy_template(destination, answers)
            cache[key] = destination
        return cache[key]

    return _render


def find_python(version: str) -> str | None:
    """An interpreter for `version`, also when pyenv's shims would refuse to run it."""
    found = shutil.which(f"python{version}")
    if found and subprocess.run([found, "-c", ""], capture_output=True).returncode == 0:
        return found
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for candidate in sorted(pyenv_root.glob(f"versions/{version}.*/bin/python{version}")):
        return str(candidate)
    return None


class ProjectEnv:
    """Runs commands in generated projects with uv, sharing one venv per Python version."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def env(self, python_version: str, **extra: str) -> dict[str, str]:
        interpreter = find_python(python_version)
        if interpreter is None:
            pytest.fail(f"no Python {python_version} interpreter on this machine")
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("VIRTUAL_ENV", "UV_", "PYTEST_"))
        }
        env.update(
            UV_PROJECT_ENVIRONMENT=str(self.root / f"venv-{python_version}"),
            UV_PYTHON=interpreter,
            UV_NO_PROGRESS="1",
            **extra,
        )
        return env

    def run(
        self,
        project: Path,
        *args: str,
        python_version: str = "3.11",
        check: bool = True,
        timeout: float = 600,
        **extra_env: str,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["uv", "run", "--directory", str(project / "backend"), *args],
            env=self.env(python_version, **extra_env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"`uv run {' '.join(args)}` failed with exit code {result.returncode}\n"
                f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
            )
        return result


@pytest.fixture(scope="session")
def project_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectEnv]:
    yield ProjectEnv(tmp_path_factory.mktemp("venvs"))
