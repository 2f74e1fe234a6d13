"""Safe regeneration: applying the template again never loses an edit the user made.

Copier runs this after every `copier update` (an unversioned `_migrations` entry in the
"after" stage, see copier.yml), from the project's directory, once it has merged the
user's changes into the new template version. At that point HEAD still holds the user's
own version of every file, and:

1. a file Copier left with conflict markers gets the user's version back, byte for byte;
   the template's side (conflict regions resolved toward the template, the rest as
   merged) goes to FILE.new, and the file's unmerged index state is cleared;
2. a file the template removed but the user had modified is restored ("kept"); one the
   user had not modified stays removed, as Copier intends;
3. a file the user deleted stays deleted and is reported as skipped;
4. a FILE.new this hook wrote at an earlier update is replaced; any other file whose
   name ends in .new is the user's and is never touched (the template's side then goes
   to FILE.2.new, FILE.3.new, ...);
5. in strict mode every file that both the user and the template changed keeps the
   user's version and gets a FILE.new, even when the two changes merged cleanly;
6. backend/uv.lock is never merged line by line: uv re-resolves it from the merged
   pyproject.toml, starting from the user's lock, with the template's versions for the
   packages the user had left at the template's pins (see `settle_lock`);
7. a report is printed as a table and saved as .copier-update-report.md;
8. when the models or the migrations changed, the project's migrations helper says
   whether they still agree.

post_copy.py calls `protect_regeneration` when the generator runs again over an
existing git project (`copier recopy --overwrite`, or `copier copy --overwrite` into it):
there is no merge then, so every file the user changed keeps the user's version and the
freshly rendered one goes to FILE.new.

To tell the user's changes from the template's the hook renders the previous template
version (and, for an update, the new one) with the project's answers into scratch
directories: Copier deletes its own renders before the "after" stage runs.

Only the standard library is used: this runs under the Python that runs Copier, which
also renders those scratch copies (`python -m copier`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPORT_FILE = ".copier-update-report.md"
NEW_SUFFIX = ".new"
# The report records which .new files this hook wrote, and a digest of each, so that the
# next update can tell them from the user's own files with the same ending: a name alone
# would not do, since a user may commit a FILE.new of their own after removing ours.
RECORD_PREFIX = "<!-- dayone-update-new-files: "
RECORD_SUFFIX = " -->"
# Where a template change means the database schema may have moved.
SCHEMA_PATHS = ("backend/app/models/", "backend/alembic/")
HELPER_COMMAND = ("uv", "run", "--project", "backend", "python", "-m", "tools.migrations_helper")
HELPER_TIMEOUT_SECONDS = 300
# The lock file uv keeps for the backend, and the manifest it is resolved from.
LOCK_FILE = "backend/uv.lock"
PYPROJECT_FILE = "backend/pyproject.toml"
LOCK_TIMEOUT_SECONDS = 600
# The first two lines of each package in a uv.lock.
LOCKED_PACKAGE = re.compile(
    rb'^\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', re.MULTILINE
)

# Report categories, in the order the report lists them, with what each one means.
CATEGORIES = {
    "added": "new in the template",
    "updated": "the template's change applied (you had not changed this file)",
    "merged": "your changes and the template's merged cleanly",
    "relocked": "re-resolved by uv from the merged pyproject.toml, not merged line by line",
    "conflict (.new)": "your version kept; the template's version is in {new}",
    "kept": "removed by the template, modified by you: kept",
    "removed": "removed by the template (you had not changed it)",
    "skipped": "deleted by you: stays deleted (the template changed it)",
}


@dataclass(frozen=True)
class Entry:
    path: str
    category: str
    new_file: str | None = None
    note: str = ""

    def describe(self) -> str:
        text = CATEGORIES[self.category].format(new=self.new_file)
        return f"{text}; {self.note}" if self.note else text


@dataclass
class Outcome:
    operation: str
    version_from: str
    version_to: str
    strict: bool
    entries: list[Entry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    schema_notice: str = ""
    # .new files of earlier runs still waiting for the user's review.
    earlier_new_files: list[str] = field(default_factory=list)
    # Every .new file of the hook's now in the project, with the SHA-256 of its content.
    record: dict[str, str] = field(default_factory=dict)

    @property
    def new_files(self) -> list[str]:
        return sorted(entry.new_file for entry in self.entries if entry.new_file)


class Git:
    """git in the project's directory; every path is relative to that directory."""

    def __init__(self, project: Path) -> None:
        self.project = project

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            # Literal pathspecs: a file name with * or ? names that one file only.
            ["git", "--literal-pathspecs", *args],
            cwd=self.project,
            capture_output=True,
            check=check,
        )

    def names(self, *args: str) -> list[str]:
        output = self.run(*args, "-z").stdout.decode("utf-8", "surrogateescape")
        return [name for name in output.split("\0") if name]

    def has_head(self) -> bool:
        return self.run("rev-parse", "--verify", "--quiet", "HEAD", check=False).returncode == 0

    def has_deletions(self) -> bool:
        """Whether any commit up to HEAD deleted a file."""
        found = self.run("log", "-1", "--diff-filter=D", "--format=%H", "HEAD", check=False)
        return bool(found.stdout.strip())

    def head_files(self) -> set[str]:
        return set(self.names("ls-tree", "-r", "--name-only", "HEAD"))

    def head_blob(self, path: str) -> bytes | None:
        result = self.run("cat-file", "blob", f"HEAD:./{path}", check=False)
        return result.stdout if result.returncode == 0 else None

    def head_mode(self, path: str) -> int:
        listing = self.run("ls-tree", "HEAD", "--", path).stdout.decode()
        return 0o755 if listing.startswith("100755") else 0o644

    def blob(self, sha: str) -> bytes:
        return self.run("cat-file", "blob", sha).stdout

    def unmerged(self) -> dict[str, dict[int, str]]:
        """Unmerged paths with the blob of each stage (1 base, 2 ours, 3 theirs)."""
        stages: dict[str, dict[int, str]] = {}
        for line in self.names("ls-files", "--unmerged"):
            info, path = line.split("\t", 1)
            _mode, sha, stage = info.split()
            stages.setdefault(path, {})[int(stage)] = sha
        return stages

    def restore_from_head(self, paths: Iterable[str]) -> None:
        """Put back HEAD's version of each path, in the index and the working tree.

        This also clears an unmerged index entry. Hooks are off, as Copier does it too, so
        that a post-checkout hook in the user's repository cannot get in the way.
        """
        paths = sorted(paths)
        if paths:
            self.run("-c", f"core.hooksPath={os.devnull}", "checkout", "HEAD", "--", *paths)


def merge_toward_template(ours: bytes, base: bytes, theirs: bytes) -> bytes:
    """Three-way merge where every conflicting region takes the template's side."""
    with tempfile.TemporaryDirectory(prefix="dayone-merge-") as scratch:
        files = []
        for name, content in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = Path(scratch, name)
            path.write_bytes(content)
            files.append(str(path))
        result = subprocess.run(
            ["git", "merge-file", "--stdout", "--theirs", *files],
            capture_output=True,
            check=False,
        )
    if result.returncode < 0 or result.returncode > 127:
        raise RuntimeError(f"git merge-file failed: {result.stderr.decode(errors='replace')}")
    return result.stdout


def answers_commit(answers: bytes) -> str | None:
    """The template commit an answers file records (Copier writes `_commit: REF`)."""
    match = re.search(rb"^_commit:\s*['\"]?([^\s'\"]+)", answers, re.MULTILINE)
    return match.group(1).decode() if match else None


def render(template: str, ref: str, answers_file: str, answers: bytes, dest: Path) -> str | None:
    """Render one template version with the given answers; return an error or None.

    Copier reads the answers file it finds in the destination as the previous answers and
    `--defaults` takes them, which is how `copier update` renders its own scratch copies.
    """
    (dest / answers_file).parent.mkdir(parents=True, exist_ok=True)
    (dest / answers_file).write_bytes(answers)
    command = [
        sys.executable,
        "-m",
        "copier",
        "copy",
        "--trust",
        "--defaults",
        "--overwrite",
        "--skip-tasks",
        "--quiet",
        f"--vcs-ref={ref}",
        f"--answers-file={answers_file}",
        template,
        str(dest),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return f"could not render template version {ref}: {result.stderr.strip()[-800:]}"
    return None


def rendered_files(root: Path, answers_file: str) -> dict[str, Path]:
    return {
        path.relative_to(root).as_posix(): path
        for path in root.rglob("*")
        if (path.is_file() or path.is_symlink())
        and path.relative_to(root).as_posix() != answers_file
    }


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def previous_new_files(project: Path) -> set[str]:
    """The .new files an earlier run wrote that still hold what it wrote: any other file
    of such a name, however it came to exist, is the user's."""
    report = project / REPORT_FILE
    if not report.is_file():
        return set()
    for line in report.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(RECORD_PREFIX) and line.endswith(RECORD_SUFFIX):
            try:
                record = json.loads(line[len(RECORD_PREFIX) : -len(RECORD_SUFFIX)])
            except json.JSONDecodeError:
                return set()
            # A record without digests (an older hook's) proves nothing: none is ours.
            if not isinstance(record, dict):
                return set()
            return {
                name
                for name, sha in record.items()
                if isinstance(name, str) and digest(project / name) == sha
            }
    return set()


class NewFiles:
    """Chooses and writes the FILE.new that holds the template's side of a file."""

    def __init__(self, project: Path, git: Git, ours_before: set[str]) -> None:
        self.project = project
        self.git = git
        self.ours_before = ours_before
        self.written: set[str] = set()

    def write(self, path: str, content: bytes) -> tuple[str, str]:
        """Write the template's side of `path`; return its file name and a report note."""
        candidates = [f"{path}{NEW_SUFFIX}"]
        candidates += [f"{path}.{number}{NEW_SUFFIX}" for number in range(2, 100)]
        for name in candidates:
            target = self.project / name
            if name in self.written:
                continue
            exists = target.exists() or target.is_symlink()
            if exists and name not in self.ours_before:
                # The user's own file: never touched.
                continue
            note = "replaces the .new file of an earlier update" if exists else ""
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            # An executable script's .new stays executable, so that `mv` accepts it whole.
            target.chmod(self.git.head_mode(path))
            self.written.add(name)
            return name, note
        raise RuntimeError(f"no free name for the template's version of {path}")


# A render to make: "base" or "new", the template version, the answers to render with.
Job = tuple[str, str | None, bytes | None]


class Renders:
    """The previous (base) and the new template renders, in scratch directories."""

    def __init__(self, answers_file: str) -> None:
        self.answers_file = answers_file
        self.scratch = Path(tempfile.mkdtemp(prefix="dayone-regenerate-"))
        self.base: dict[str, Path] = {}
        self.new: dict[str, Path] = {}
        self.base_ok = False
        self.new_ok = False
        self.errors: list[str] = []

    def load(self, template: str, jobs: Sequence[Job]) -> None:
        """Render ("base" or "new", ref, answers) jobs side by side."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {}
            for kind, ref, answers in jobs:
                if not (ref and answers):
                    self.errors.append(f"no answers or template version for the {kind} copy")
                    continue
                dest = self.scratch / kind
                futures[kind] = pool.submit(render, template, ref, self.answers_file, answers, dest)
        for kind, future in futures.items():
            error = future.result()
            if error:
                self.errors.append(error)
                continue
            files = rendered_files(self.scratch / kind, self.answers_file)
            if kind == "base":
                self.base, self.base_ok = files, True
            else:
                self.new, self.new_ok = files, True

    def base_content(self, path: str) -> bytes | None:
        source = self.base.get(path)
        return source.read_bytes() if source is not None else None

    def user_changed(self, git: Git, path: str) -> bool:
        """Whether the user's committed version differs from what the template gave them.

        Without the previous render nobody can tell, and the safe answer is yes: a kept
        file or an extra .new costs a review, a wrong no would cost the user's work.
        """
        if not self.base_ok:
            return True
        return git.head_blob(path) != self.base_content(path)

    def cleanup(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


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


def resolve_update(
    project: Path,
    git: Git,
    renders: Renders,
    outcome: Outcome,
    answers_file: str,
    settled: frozenset[str] = frozenset(),
) -> None:
    """Turn the state Copier's merge left into the promised one (see the module docstring).

    Paths in `settled` are left to their own step (the lock file's).
    """
    new_files = NewFiles(project, git, previous_new_files(project))
    head_files = git.head_files()
    git.run("update-index", "-q", "--refresh", check=False)
    unmerged = {path: stages for path, stages in git.unmerged().items() if path not in settled}
    deleted = set(git.names("ls-files", "--deleted")) - set(unmerged) - settled
    modified = set(git.names("ls-files", "--modified")) - deleted - set(unmerged) - settled
    untracked = set(git.names("ls-files", "--others", "--exclude-standard")) - settled
    untracked -= {f"{path}.rej" for path in settled}
    rejects = {name for name in untracked if name.endswith(".rej")}
    restore: set[str] = set()
    pending_new: list[tuple[str, bytes, str]] = []

    for path, stages in sorted(unmerged.items()):
        ours = git.head_blob(path) or b""
        if 3 not in stages:
            # Copier marks no conflict for a file the template deleted, but be sure.
            restore.add(path)
            outcome.entries.append(Entry(path, "kept"))
            continue
        base = git.blob(stages[1]) if 1 in stages else b""
        theirs = git.blob(stages[3])
        pending_new.append((path, merge_toward_template(ours, base, theirs), "conflict (.new)"))

    # `copier update --conflict rej` leaves FILE.rej beside a half-applied FILE instead of
    # markers; the renders give the same three sides, so it ends the same way. A .rej
    # holds hunks of the user's own change, all of which HEAD still has, and is never the
    # user's file: Copier refuses to update a tree with untracked files in it.
    for reject in sorted(rejects):
        (project / reject).unlink()
        untracked.discard(reject)
        path = reject.removesuffix(".rej")
        base, new = renders.base_content(path), renders.new.get(path)
        if new is None or path in unmerged:
            # Removed or renamed away by the template (the rule for deleted files below
            # keeps the user's), or already handled as a conflict above.
            continue
        modified.discard(path)
        ours = git.head_blob(path) or b""
        merged = merge_toward_template(ours, base or b"", new.read_bytes())
        pending_new.append((path, merged, "conflict (.new)"))

    for path in sorted(deleted):
        if path == answers_file:
            continue
        if renders.user_changed(git, path):
            restore.add(path)
            outcome.entries.append(Entry(path, "kept"))
        else:
            outcome.entries.append(Entry(path, "removed"))

    for path in sorted(modified):
        if path == answers_file:
            continue
        if not renders.user_changed(git, path):
            outcome.entries.append(Entry(path, "updated"))
        elif outcome.strict:
            merged = (project / path).read_bytes()
            pending_new.append((path, merged, "conflict (.new)"))
        else:
            outcome.entries.append(Entry(path, "merged"))

    # Everything untracked now came from the template: Copier refuses to update a tree
    # with untracked files in it.
    for path in sorted(untracked):
        outcome.entries.append(Entry(path, "added"))

    restore.update(path for path, _content, _category in pending_new)
    git.restore_from_head(restore)
    for path, content, category in pending_new:
        name, note = new_files.write(path, content)
        if outcome.strict and path not in unmerged and f"{path}.rej" not in rejects:
            note = "; ".join(filter(None, ["strict mode: the changes would have merged", note]))
        outcome.entries.append(Entry(path, category, name, note))

    # A file the user deleted is worth a line only when this update brings a change to it
    # that the user therefore does not get.
    for path in sorted(set(renders.new) - head_files - untracked - settled):
        base = renders.base_content(path)
        if base is None or (project / path).exists():
            continue
        if renders.new[path].read_bytes() != base:
            outcome.entries.append(Entry(path, "skipped"))


def resolve_regeneration(
    project: Path,
    git: Git,
    renders: Renders,
    outcome: Outcome,
    answers_file: str,
    settled: frozenset[str] = frozenset(),
) -> None:
    """After a copy over an existing project: keep what the user changed, .new the rest."""
    new_files = NewFiles(project, git, previous_new_files(project))
    git.run("update-index", "-q", "--refresh", check=False)
    modified = set(git.names("ls-files", "--modified")) - settled
    deleted = set(git.names("ls-files", "--deleted")) - settled
    untracked = set(git.names("ls-files", "--others", "--exclude-standard")) - settled
    restore: set[str] = set()
    pending_new: list[tuple[str, bytes]] = []

    for path in sorted(modified - deleted):
        if path == answers_file:
            continue
        if not renders.user_changed(git, path):
            outcome.entries.append(Entry(path, "updated"))
            continue
        rendered = (project / path).read_bytes()
        restore.add(path)
        # A template that did not change the file has nothing to offer: the copy only
        # overwrote the user's edit, and putting it back is all there is to do.
        if not renders.base_ok or renders.base_content(path) != rendered:
            pending_new.append((path, rendered))

    # Unlike an update, a copy runs over whatever was there: an untracked file is the
    # template's only when the new version renders it.
    head_files = git.head_files()
    for path in sorted(untracked):
        if renders.new_ok and path not in renders.new:
            continue
        if renders.base_ok and path in renders.base and path not in head_files:
            # The user deleted it after an earlier generation; the copy brought it back.
            # As after an update, it is worth a line only if the template changed it.
            rendered = (project / path).read_bytes()
            (project / path).unlink()
            if rendered != renders.base_content(path):
                outcome.entries.append(Entry(path, "skipped"))
        elif renders.new_ok:
            outcome.entries.append(Entry(path, "added"))

    git.restore_from_head(restore)
    for path, content in pending_new:
        name, note = new_files.write(path, content)
        outcome.entries.append(Entry(path, "conflict (.new)", name, note))


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


def table(rows: list[tuple[str, str, str]], markdown: bool) -> str:
    header = ("change", "file", "what happened")
    if markdown:
        escaped = [tuple(cell.replace("|", "\\|") for cell in row) for row in rows]
        lines = ["| " + " | ".join(header) + " |", "|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in escaped]
        return "\n".join(lines)
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)).rstrip()
    ]
    lines.append("  ".join("-" * width for width in widths))
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines)


def report(outcome: Outcome, markdown: bool) -> str:
    order = list(CATEGORIES)
    entries = sorted(outcome.entries, key=lambda entry: (order.index(entry.category), entry.path))
    rows = [(entry.category, entry.path, entry.describe()) for entry in entries]
    mode = "strict" if outcome.strict else "default"
    title = "# Template update report" if markdown else "Template update report"
    code = "`" if markdown else ""
    lines = [
        title,
        "",
        (
            f"{code}copier {outcome.operation}{code}: template {outcome.version_from} → "
            f"{outcome.version_to}, {mode} mode."
        ),
        "",
    ]
    if rows:
        lines += [table(rows, markdown), ""]
    else:
        lines += ["Nothing changed: the template brings no change to this project.", ""]
    for warning in outcome.warnings:
        lines += [f"Warning: {warning}", ""]
    pairs = [(entry.path, entry.new_file) for entry in entries if entry.new_file]
    if pairs:
        lines += ["## Next steps" if markdown else "Next steps:", ""]
        lines += [
            "Each FILE below still holds your version; FILE.new holds the template's.",
            "Review what the template would change, then accept it or keep yours:",
            "",
        ]
        fence = ["```sh"] if markdown else []
        lines += fence
        for path, new_file in pairs:
            lines.append(f"diff -u {path} {new_file}")
        lines.append("")
        for path, new_file in pairs:
            lines.append(f"mv {new_file} {path}    # accept the template's version")
        lines += ["```"] if markdown else []
        lines += [
            "",
            (
                "To keep your version instead, delete the .new file (or merge by hand, then "
                "delete it). Commit before the next `copier update`: it needs a clean tree."
            ),
            "",
        ]
    waiting = sorted(set(outcome.earlier_new_files) - set(outcome.new_files))
    if waiting:
        lines += [
            "Still waiting for your review from an earlier update: " + ", ".join(waiting),
            "",
        ]
    kept = [entry.path for entry in entries if entry.category == "kept"]
    if kept:
        lines += [
            (
                "Kept files are no longer part of the template; delete them with `git rm` "
                "once nothing of yours needs them."
            ),
            "",
        ]
    if outcome.schema_notice:
        lines += ["## Database" if markdown else "Database:", ""]
        lines += [*(["```text"] if markdown else []), outcome.schema_notice]
        lines += [*(["```"] if markdown else []), ""]
    if markdown:
        # Earlier .new files the user has not dealt with yet stay recorded as the hook's,
        # so that a later update may still replace them.
        record = json.dumps(outcome.record, sort_keys=True)
        lines.append(f"{RECORD_PREFIX}{record}{RECORD_SUFFIX}")
    return "\n".join(lines).rstrip() + "\n"


def finish(project: Path, outcome: Outcome) -> None:
    outcome.earlier_new_files = sorted(previous_new_files(project))
    outcome.record = {
        name: sha
        for name in {*outcome.new_files, *outcome.earlier_new_files}
        if (sha := digest(project / name)) is not None
    }
    changed = schema_paths(outcome.entries)
    if changed:
        outcome.schema_notice = schema_notice(project, changed)
    (project / REPORT_FILE).write_text(report(outcome, markdown=True), encoding="utf-8")
    print()
    print(report(outcome, markdown=False))
    print(f"This report is saved in {REPORT_FILE} (gitignored).")


def version_label(env_name: str, fallback: str | None) -> str:
    return os.environ.get(env_name) or fallback or "unknown"


def run_update(project: Path, template: str, answers_file: str, strict: bool) -> Outcome:
    git = Git(project)
    head_answers = git.head_blob(answers_file)
    current_answers = (project / answers_file).read_bytes()
    ref_from = os.environ.get("VERSION_FROM") or (head_answers and answers_commit(head_answers))
    ref_to = os.environ.get("VERSION_TO") or answers_commit(current_answers)
    outcome = Outcome(
        operation="update",
        version_from=version_label("VERSION_PEP440_FROM", ref_from),
        version_to=version_label("VERSION_PEP440_TO", ref_to),
        strict=strict,
    )
    renders = Renders(answers_file)
    try:
        # The new version's render only serves to report the user's deletions that the
        # update skips, and to settle `--conflict rej` leftovers; most updates have
        # neither, and a render costs a second or two. When the history holds a deletion
        # or a .rej file is there, both renders run side by side; otherwise the new one
        # runs only if the previous render shows a file missing from HEAD after all.
        base_job: Job = ("base", ref_from, head_answers)
        new_job: Job = ("new", ref_to, current_answers)
        untracked = git.names("ls-files", "--others", "--exclude-standard")
        rejects = any(name.endswith(".rej") for name in untracked)
        if rejects or git.has_deletions():
            renders.load(template, [base_job, new_job])
        else:
            renders.load(template, [base_job])
            if set(renders.base) - git.head_files():
                renders.load(template, [new_job])
        outcome.warnings += renders.errors
        if not renders.base_ok:
            outcome.warnings.append(
                "without the previous template version every file the template touched "
                "counts as changed by you: nothing of yours is lost, but more files are "
                "kept or sent to .new than needed"
            )
        sides = lock_sides(project, git, renders, template, new_job)
        settled = frozenset({LOCK_FILE} if sides else ())
        resolve_update(project, git, renders, outcome, answers_file, settled)
        if sides:
            settle_lock(project, git, sides, outcome)
    finally:
        renders.cleanup()
    return outcome


def protect_regeneration(project: Path, template: str, answers_file: str) -> Outcome | None:
    """Keep the user's committed work after the generator ran over an existing project.

    Returns None (and does nothing) when the project is not a git project with history:
    a first generation has nothing to protect.
    """
    git = Git(project)
    if not git.has_head() or not git.head_files():
        return None
    head_answers = git.head_blob(answers_file)
    current_answers = (project / answers_file).read_bytes()
    ref_from = head_answers and answers_commit(head_answers)
    outcome = Outcome(
        operation="copy",
        version_from=ref_from or "unknown",
        version_to=answers_commit(current_answers) or "unknown",
        strict=False,
    )
    renders = Renders(answers_file)
    try:
        # The template path is Copier's checkout of the version it has just copied.
        new_job: Job = ("new", "HEAD", current_answers)
        renders.load(template, [("base", ref_from, head_answers), new_job])
        if not renders.base_ok:
            outcome.warnings.append(
                "the previous template version could not be rendered, so every file the "
                "copy changed counts as changed by you and keeps your version"
            )
        sides = lock_sides(project, git, renders, template, new_job)
        settled = frozenset({LOCK_FILE} if sides else ())
        resolve_regeneration(project, git, renders, outcome, answers_file, settled)
        if sides:
            settle_lock(project, git, sides, outcome)
    finally:
        renders.cleanup()
    finish(project, outcome)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", required=True, help="the template Copier is applying")
    parser.add_argument("--answers-file", default=".copier-answers.yml")
    parser.add_argument("--strict", default="False")
    args = parser.parse_args(argv)
    project = Path.cwd()
    try:
        outcome = run_update(project, args.template, args.answers_file, args.strict == "True")
    except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
        # The update stops with an error rather than claiming a safe result; HEAD still
        # holds every file as the user committed it.
        print(f"The update's safety step failed: {error}", file=sys.stderr)
        print(
            "Your committed work is intact: `git diff` shows what the update changed and "
            "`git checkout HEAD -- FILE` brings back your version of a file.",
            file=sys.stderr,
        )
        return 1
    finish(project, outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
