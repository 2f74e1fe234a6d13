"""`copier update` re-resolves backend/uv.lock from the merged pyproject.toml; it never
merges the lock line by line, never leaves a FILE.new or FILE.rej of it, and keeps every
version the user chose.

The releases are made the way a maintainer makes them (scripts/relock.py), and the user
changes their dependencies the way uv users do (`uv add`, `uv lock --upgrade-package`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from template_tools import UV, git
from update_support import (
    REPORT,
    commit,
    copier,
    copier_env,
    generate,
    report_rows,
    tag,
    update,
    versioned_template,
)

pytestmark = pytest.mark.slow

LOCK = "backend/uv.lock"
# v2 of the template adds a dependency and moves two pins; the user moved one of them too.
TEMPLATE_PINS = {"pyjwt": "2.10.1", "certifi": "2025.1.31"}
USER_PINS = {"certifi": "2025.4.26", "humanize": "4.11.0"}


def versions(lock: bytes, name: str) -> set[str]:
    packages = tomllib.loads(lock.decode())["package"]
    return {package["version"] for package in packages if package["name"] == name}


def uv(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [UV, *args],
        cwd=project / "backend",
        env={**os.environ, "UV_NO_PROGRESS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"uv {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result


@dataclass(frozen=True)
class Releases:
    template: Path
    untouched: Path  # generated from v1, committed, never changed
    edited: Path  # generated from v1, its dependencies changed by the user


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    root = tmp_path_factory.mktemp("lock-update")
    template = versioned_template(root / "template")
    untouched = generate(template, root / "untouched", "v1")
    edited = generate(template, root / "edited", "v1")
    uv(edited, "add", "--no-sync", f"humanize=={USER_PINS['humanize']}")
    uv(edited, "lock", f"--upgrade-package=certifi=={USER_PINS['certifi']}")
    commit(edited, "humanize, and the certifi our auditors approved")

    pyproject = template / "template" / "backend" / "pyproject.toml.jinja"
    lines = pyproject.read_text().splitlines(keepends=True)
    end = lines.index("]\n", lines.index("dependencies = [\n"))
    # Two entries above the last: the user's addition, which uv appends to the list that
    # is not sorted, comes two lines below it, so that a patch of either needs lines the
    # other changed.
    lines.insert(end - 2, '    "tenacity>=9",\n')
    pyproject.write_text("".join(lines))
    pins = [f"--upgrade-package={name}=={version}" for name, version in TEMPLATE_PINS.items()]
    subprocess.run(
        [sys.executable, "scripts/relock.py", *pins], cwd=template, check=True, timeout=600
    )
    commit(template, "v2: tenacity, and the pins CI tested")
    tag(template, "v2")
    return Releases(template, untouched, edited)


def updated_copy(project: Path, destination: Path, *options: str) -> Path:
    subprocess.run(["git", "clone", "--quiet", str(project), str(destination)], check=True)
    env = copier_env()
    env["PATH"] = f"{Path(UV).parent}{os.pathsep}{env.get('PATH', '')}"
    update(destination, "--vcs-ref", "v2", *options, env=env)
    return destination


def assert_settled(project: Path) -> None:
    """No trace of a merge: no markers, no leftovers, nothing unmerged, a lock uv accepts."""
    lock = (project / LOCK).read_bytes()
    assert b"<<<<<<<" not in lock and b">>>>>>>" not in lock
    for leftover in (".new", ".rej", ".orig"):
        assert not (project / f"{LOCK}{leftover}").exists()
    assert git(project, "ls-files", "--unmerged") == ""
    assert f"{LOCK}.new" not in (project / REPORT).read_text()
    uv(project, "lock", "--check")


@pytest.mark.parametrize("conflict", ["inline", "rej"])
def test_the_users_versions_stay_and_the_templates_arrive_where_the_user_kept_its_pins(
    conflict: str, releases: Releases, tmp_path: Path
) -> None:
    project = updated_copy(releases.edited, tmp_path / "app", "--conflict", conflict)
    assert_settled(project)
    lock = (project / LOCK).read_bytes()
    # Chosen by the user: kept, though the template moved certifi too.
    assert versions(lock, "certifi") == {USER_PINS["certifi"]}
    assert versions(lock, "humanize") == {USER_PINS["humanize"]}
    # Left at the template's pin by the user: the template's new one.
    assert versions(lock, "pyjwt") == {TEMPLATE_PINS["pyjwt"]}
    assert ("relocked", LOCK) in report_rows(project)
    report = (project / REPORT).read_text()
    assert "pyjwt" in report and TEMPLATE_PINS["pyjwt"] in report

    # Inline mode merges the two dependency lists; rej mode places no hunk it cannot
    # apply as it is, so the template's pyproject.toml comes as a .new, and the report
    # says to relock once it is accepted.
    pyproject = project / "backend" / "pyproject.toml"
    offered = project / "backend" / "pyproject.toml.new"
    assert offered.exists() == (conflict == "rej")
    if offered.exists():
        assert "after accepting its .new, run `uv lock --project backend`" in report
        offered.replace(pyproject)
        uv(project, "lock")
        lock = (project / LOCK).read_bytes()
    # Both sides' new dependencies, in pyproject.toml and in the lock.
    text = pyproject.read_text()
    assert '"tenacity>=9"' in text and f'"humanize=={USER_PINS["humanize"]}"' in text
    assert versions(lock, "tenacity") and versions(lock, "humanize")


def test_a_project_that_kept_the_templates_lock_gets_the_new_one_as_it_is(
    releases: Releases, tmp_path: Path
) -> None:
    project = updated_copy(releases.untouched, tmp_path / "app")
    assert_settled(project)
    fresh = generate(releases.template, tmp_path / "fresh", "v2")
    assert (project / LOCK).read_bytes() == (fresh / LOCK).read_bytes()
    assert ("relocked", LOCK) in report_rows(project)


def test_a_recopy_re_resolves_the_lock_too(releases: Releases, tmp_path: Path) -> None:
    project = tmp_path / "app"
    subprocess.run(["git", "clone", "--quiet", str(releases.edited), str(project)], check=True)
    env = copier_env()
    env["PATH"] = f"{Path(UV).parent}{os.pathsep}{env.get('PATH', '')}"
    copier(
        "recopy", "--defaults", "--trust", "--overwrite", "--vcs-ref", "v2", cwd=project, env=env
    )
    assert_settled(project)
    lock = (project / LOCK).read_bytes()
    assert versions(lock, "certifi") == {USER_PINS["certifi"]}
    assert versions(lock, "pyjwt") == {TEMPLATE_PINS["pyjwt"]}
