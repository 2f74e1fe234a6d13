"""Refresh the lock file the template ships: template/backend/uv.lock.jinja.

Every generated project gets a uv.lock so that its installs (Docker image, CI, a
colleague's machine) are the versions the template's own CI tested. The lock is the one uv
writes for the default answers, with the two lines that depend on the answers turned into
Jinja: the project's `requires-python` and its own package name. uv accepts that lock for
every Python version the questionnaire offers, since it resolves for all of them at once.

    uv run python scripts/relock.py              # after changing backend/pyproject.toml.jinja
    uv run python scripts/relock.py --upgrade    # move every pin to the newest release
    uv run python scripts/relock.py -P fastapi   # move one (or `-P fastapi==0.122.0`)

Without --upgrade the versions already locked are kept wherever pyproject.toml still
allows them, as `uv lock` does in a project. tests/test_lock.py fails when the lock and
pyproject.toml.jinja have drifted apart, and says to run this.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from shipped import TEMPLATE_DIR, refuse_jinja, render_working_tree, ship
from uv import find_uv_bin

LOCK_TEMPLATE = TEMPLATE_DIR / "template" / "backend" / "uv.lock.jinja"
# The answers the lock is resolved with: the lowest Python the questionnaire offers (a lock
# for >=3.11 covers the newer ones too) and the default slug, whose name is replaced.
ANSWERS = {"project_name": "My App", "project_slug": "my_app", "python_version": "3.11"}
REQUIRES_PYTHON = 'requires-python = ">=3.11"\n'
PROJECT_BLOCK = '[[package]]\nname = "my-app"\nversion = "0.1.0"\nsource = { virtual = "." }\n'


def as_template(lock: str) -> str:
    """The lock with its answer-dependent lines as Jinja; fails on anything unexpected."""
    refuse_jinja(lock, "uv.lock")
    for line in (REQUIRES_PYTHON, PROJECT_BLOCK):
        if lock.count(line) != 1:
            raise SystemExit(f"expected exactly one {line.splitlines()[0]!r} in uv.lock")
    lock = lock.replace(REQUIRES_PYTHON, 'requires-python = ">={{ python_version }}"\n')
    return lock.replace(
        PROJECT_BLOCK,
        PROJECT_BLOCK.replace('"my-app"', '"{{ project_slug | distribution_name }}"'),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="newest versions of everything")
    parser.add_argument(
        "-P",
        "--upgrade-package",
        action="append",
        default=[],
        metavar="PACKAGE[==VERSION]",
        help="move one package (to its newest release, or to VERSION); repeatable",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dayone-relock-") as scratch:
        backend = render_working_tree(Path(scratch) / "project", ANSWERS) / "backend"
        command = [find_uv_bin(), "lock", *(["--upgrade"] if args.upgrade else [])]
        command += [f"--upgrade-package={package}" for package in args.upgrade_package]
        result = subprocess.run(command, cwd=backend, check=False)
        if result.returncode != 0:
            return result.returncode
        lock = (backend / "uv.lock").read_text(encoding="utf-8")
    ship(LOCK_TEMPLATE, as_template(lock))
    return 0


if __name__ == "__main__":
    sys.exit(main())
