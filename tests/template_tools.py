"""What the template's tests share: where the template is, how to render it, and how to
run a generated project's commands with uv (the fixtures in conftest.py hand these out).
"""

from __future__ import annotations

import atexit
import functools
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from copier import run_copy
from uv import find_uv_bin

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = TEMPLATE_DIR.parent / "shared" / "reference"
# The uv that came with the test dependencies, whether or not one is on PATH.
UV = find_uv_bin()

Answers = dict[str, Any]
# What each cached render wrote, listed before any test runs tools inside it.
RENDERED_FILES: dict[Path, list[Path]] = {}


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return result.stdout


@functools.cache
def template_snapshot() -> Path:
    """The template's working tree, uncommitted changes included, as a one-commit repo.

    Copier renders a dirty template through a fresh temporary commit each time, so its
    `_commit` would differ between two renders; a snapshot keeps renders comparable.
    """
    snapshot = Path(tempfile.mkdtemp(prefix="dayone-template-"))
    atexit.register(shutil.rmtree, snapshot, ignore_errors=True)
    files = git(TEMPLATE_DIR, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, files.split("\0")):
        source = TEMPLATE_DIR / name
        if source.is_file():
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, snapshot / name)
    git(snapshot, "init", "--quiet", "--initial-branch=main")
    git(snapshot, "add", "--all")
    git(
        snapshot,
        "-c",
        "user.name=dayone tests",
        "-c",
        "user.email=tests@dayone.invalid",
        "commit",
        "--quiet",
        "--no-verify",
        "-m",
        "snapshot",
    )
    return snapshot


def copy_template(destination: Path, answers: Answers, **options: Any) -> None:
    """Render the template non-interactively, as `copier copy --defaults --trust`."""
    run_copy(
        str(template_snapshot()),
        str(destination),
        data={"init_git": False, **answers},
        defaults=True,
        unsafe=True,
        vcs_ref="HEAD",
        quiet=True,
        **options,
    )


def find_python(version: str) -> str | None:
    """An interpreter for `version`, also when pyenv's shims would refuse to run it."""
    found = shutil.which(f"python{version}")
    if (
        found
        and subprocess.run([found, "-c", ""], check=False, capture_output=True).returncode == 0
    ):
        return found
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for candidate in sorted(pyenv_root.glob(f"versions/{version}.*/bin/python{version}")):
        return str(candidate)
    return None


def generated_project_env(
    python_version: str, base: dict[str, str] | None = None, **extra: str
) -> dict[str, str]:
    """`base` (this process's environment by default) for running a generated project's
    commands with uv on `python_version`: the test run's own venv and pytest's variables
    left out; by default each project syncs its own backend/.venv."""
    interpreter = find_python(python_version)
    if interpreter is None:
        pytest.fail(f"no Python {python_version} interpreter on this machine")
    env = {
        key: value
        for key, value in (os.environ if base is None else base).items()
        if key not in {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "UV_PYTHON"}
        and not key.startswith("PYTEST_")
    }
    env.update(
        UV_PYTHON=interpreter,
        UV_NO_PROGRESS="1",
        # Compiled at install time: many tests start the app's processes, and with
        # PYTHONDONTWRITEBYTECODE set each one would compile its imports again.
        UV_COMPILE_BYTECODE="1",
        **extra,
    )
    return env


class ProjectEnv:
    """Runs commands in generated projects with uv, sharing one venv per Python version."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def env(self, python_version: str, **extra: str) -> dict[str, str]:
        shared = {"UV_PROJECT_ENVIRONMENT": str(self.root / f"venv-{python_version}")}
        return generated_project_env(python_version, **{**shared, **extra})

    def run(
        self,
        project: Path,
        *args: str,
        python_version: str = "3.11",
        check: bool = True,
        timeout: float = 600,
        from_root: bool = False,
        **extra_env: str,
    ) -> subprocess.CompletedProcess[str]:
        """`uv run ARGS` in the project's backend/, or with `from_root` at the project root
        (`uv run --project backend ARGS`), where pytest.ini and mypy.ini are."""
        where = ["--project", "backend"] if from_root else ["--directory", str(project / "backend")]
        result = subprocess.run(
            [UV, "run", *where, *args],
            cwd=project,
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


def maintainer_command(command: str, clone: Path, timeout: float = 600) -> str:
    """Run `command`, a line of the template README's sh blocks, in a fresh clone of the
    template's working tree, as a maintainer would; fail unless the README gives it as it
    is and it succeeds. Returns what it printed."""
    readme = (TEMPLATE_DIR / "README.md").read_text(encoding="utf-8").splitlines()
    assert command in [line.split("  #")[0].strip() for line in readme], command
    subprocess.run(["git", "clone", "--quiet", str(template_snapshot()), str(clone)], check=True)
    # `uv run` through the uv of the test dependencies, whether or not one is on PATH.
    argv = shlex.split(command)
    result = subprocess.run(
        [UV, *argv[1:]] if argv[0] == "uv" else argv,
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
