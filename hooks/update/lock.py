"""backend/uv.lock, which the hook re-resolves with uv instead of merging it line by line.

`settle_lock` says which versions uv starts from and which it takes from the template.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .git import Git
from .newfiles import NEW_SUFFIX
from .outcome import Entry, Outcome
from .renders import Job, Renders

# The lock file uv keeps for the backend, and the manifest it is resolved from.
LOCK_FILE = "backend/uv.lock"
PYPROJECT_FILE = "backend/pyproject.toml"
LOCK_TIMEOUT_SECONDS = 600
# The first two lines of each package in a uv.lock.
LOCKED_PACKAGE = re.compile(
    rb'^\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', re.MULTILINE
)


def locked_versions(lock: bytes | None) -> dict[str, frozenset[str]]:
    """Each package a uv.lock holds, with its version (several where the lock forks)."""
    versions: dict[str, set[str]] = {}
    for name, version in LOCKED_PACKAGE.findall(lock or b""):
        versions.setdefault(name.decode(), set()).add(version.decode())
    return {name: frozenset(found) for name, found in versions.items()}


def template_pins(ours: bytes, base: bytes | None, theirs: bytes) -> list[str]:
    """`name==version` for every package the template's new lock moves (or adds) and
    the user's lock still holds at the template's previous version (or lacks too)."""
    mine, before, after = (locked_versions(lock) for lock in (ours, base, theirs))
    return [
        f"{name}=={next(iter(versions))}"
        for name, versions in sorted(after.items())
        if len(versions) == 1
        and before.get(name) != versions
        and mine.get(name) == before.get(name)
    ]


def version_changes(before: bytes | None, after: bytes) -> str:
    """What moved between two locks, briefly: `fastapi 0.121.0 → 0.122.0, +tenacity 9.1`."""
    old, new = locked_versions(before), locked_versions(after)
    changes = []
    for name in sorted(old.keys() | new.keys()):
        was, now = old.get(name), new.get(name)
        if was == now:
            continue
        if was is None:
            changes.append(f"+{name} {'/'.join(sorted(now or ()))}")
        elif now is None:
            changes.append(f"-{name}")
        else:
            changes.append(f"{name} {'/'.join(sorted(was))} → {'/'.join(sorted(now))}")
    if not changes:
        return "no version changed"
    shown = ", ".join(changes[:8])
    return shown if len(changes) <= 8 else f"{shown} and {len(changes) - 8} more"


def uv_lock(project: Path, pins: Sequence[str]) -> str | None:
    """Run `uv lock` for the backend, with `pins` as upgrades; return an error or None."""
    uv = shutil.which("uv")
    if uv is None:
        return "uv is not on PATH"
    command = [uv, "lock", *(f"--upgrade-package={pin}" for pin in pins)]
    try:
        result = subprocess.run(
            command,
            cwd=project / "backend",
            env={**os.environ, "UV_NO_PROGRESS": "1"},
            capture_output=True,
            text=True,
            timeout=LOCK_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        return " ".join(lines[-3:]) or f"exit status {result.returncode}"
    return None


@dataclass(frozen=True)
class LockSides:
    """The three versions of backend/uv.lock: the user's (HEAD), the template's previous
    one and its new one. `ours` is None where the user's project had no lock."""

    ours: bytes | None
    base: bytes | None
    theirs: bytes


def lock_sides(
    project: Path, git: Git, renders: Renders, template: str, new_job: Job
) -> LockSides | None:
    """The lock's three sides when the hook settles the lock, else None.

    It does whenever the new template version has a lock, except where the user deleted
    theirs: a project that chose to go without one stays without, like any deleted file.
    Call it before anything else touches the tree: it reads what Copier's merge left.
    """
    ours, base = git.head_blob(LOCK_FILE), renders.base_content(LOCK_FILE)
    if ours is None and base is not None:
        return None
    if ours is None or ours == base:
        # The user's side of the merge was empty: Copier wrote the new render as it is.
        path = project / LOCK_FILE
        stages = git.unmerged().get(LOCK_FILE, {})
        if 3 in stages:
            return LockSides(ours, base, git.blob(stages[3]))
        return LockSides(ours, base, path.read_bytes()) if path.is_file() else None
    if not renders.new_ok:
        renders.load(template, [new_job])
    new = renders.new.get(LOCK_FILE)
    return LockSides(ours, base, new.read_bytes()) if new is not None else None


def settle_lock(project: Path, git: Git, sides: LockSides, outcome: Outcome) -> None:
    """Re-resolve backend/uv.lock from the merged pyproject.toml instead of merging it.

    A lock merged line by line is a lock no tool wrote: it may pin two versions of one
    package, or ones pyproject.toml no longer allows. uv starts instead from the user's
    lock, so every version the user chose (`uv add`, `uv lock --upgrade-package`) stays
    where pyproject.toml allows it, and takes the template's new version of each package
    the user had left at the template's pin: those are the versions the template tested
    together. Where the template's versions cannot all be had with the user's, uv
    resolves from the user's lock alone. Should uv fail (no network, no uv), the user's
    lock is put back as it was and the report says what to run.
    """
    for leftover in (f"{LOCK_FILE}.rej", f"{LOCK_FILE}.orig"):
        (project / leftover).unlink(missing_ok=True)
    if sides.ours is not None:
        git.restore_from_head([LOCK_FILE])  # also clears an unmerged index entry
    if sides.ours is None or sides.ours == sides.base:
        start, pins = sides.theirs, []
    else:
        start, pins = sides.ours, template_pins(sides.ours, sides.base, sides.theirs)
    lock = project / LOCK_FILE
    lock.write_bytes(start)
    print(f"Re-resolving {LOCK_FILE} from the merged {PYPROJECT_FILE} with uv ...", flush=True)
    error = uv_lock(project, pins)
    if error and pins:
        error = uv_lock(project, [])
    if error:
        lock.write_bytes(sides.ours if sides.ours is not None else sides.theirs)
        outcome.warnings.append(
            f"{LOCK_FILE} could not be re-resolved ({error}); it holds "
            f"{'your lock as it was' if sides.ours is not None else 'the template lock'}. "
            "Run `uv lock --project backend` and commit the result."
        )
        return
    result = lock.read_bytes()
    if result == sides.ours:
        return
    notes = [version_changes(sides.ours, result)]
    if (project / f"{PYPROJECT_FILE}{NEW_SUFFIX}").exists():
        notes.append(
            f"resolved from your {PYPROJECT_FILE}: after accepting its .new, run "
            "`uv lock --project backend`"
        )
    category = "relocked" if sides.ours is not None else "added"
    outcome.entries.append(Entry(LOCK_FILE, category, note="; ".join(notes)))
