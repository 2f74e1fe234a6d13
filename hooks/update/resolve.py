"""From the tree Copier left to the one the package promises (its points 1 to 5).

`resolve_update` runs after `copier update` has merged; `resolve_regeneration` after a
copy over an existing project, where nothing was merged.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .git import Git
from .newfiles import MERGE_SUFFIX, NewFiles, previous_new_files
from .outcome import Entry, Outcome
from .renders import Renders


def merge_file(ours: bytes, base: bytes, theirs: bytes, *options: str) -> tuple[bytes, int]:
    """`git merge-file` of the three sides: the result and the number of conflicts."""
    with tempfile.TemporaryDirectory(prefix="dayone-merge-") as scratch:
        files = []
        for name, content in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = Path(scratch, name)
            path.write_bytes(content)
            files.append(str(path))
        result = subprocess.run(
            ["git", "merge-file", "--stdout", *options, *files],
            capture_output=True,
            check=False,
        )
    if result.returncode < 0 or result.returncode > 127:
        raise RuntimeError(f"git merge-file failed: {result.stderr.decode(errors='replace')}")
    return result.stdout, result.returncode


def merge_toward_template(ours: bytes, base: bytes, theirs: bytes) -> bytes:
    """Three-way merge where every conflicting region takes the template's side."""
    return merge_file(ours, base, theirs, "--theirs")[0]


@dataclass(frozen=True)
class Sides:
    """What goes beside a file the user keeps: FILE.new, and FILE.merge when FILE.new
    alone would drop lines of the user's."""

    path: str
    new: bytes
    merge: bytes | None = None
    regions: int = 0
    new_holds_yours: bool = False


def sides(
    path: str, new: bytes, ours: bytes, base: bytes | None, theirs: bytes, version: str
) -> Sides:
    """`new` for FILE.new and, for a text file, FILE.merge: the user's side (`ours`) and
    the template's (`theirs`) merged from `base`, with conflict markers around each
    region both changed, so that resolving them loses nothing."""
    if base is None or any(b"\0" in side for side in (ours, base, theirs)):
        return Sides(path, new)
    labels = ("-L", "yours", "-L", "before", "-L", f"template {version}")
    merged, regions = merge_file(ours, base, theirs, *labels)
    if merged == new:
        return Sides(path, new, new_holds_yours=True)
    return Sides(path, new, merged, regions)


def write_sides(new_files: NewFiles, side: Sides, note: str = "") -> Entry:
    """Write FILE.new (and FILE.merge) beside the user's file; the report's entry for it."""
    name, replaced = new_files.write(side.path, side.new)
    merge_name = None
    if side.merge is not None:
        merge_name, _replaced = new_files.write(side.path, side.merge, MERGE_SUFFIX)
    note = "; ".join(filter(None, [note, replaced]))
    return Entry(
        side.path, "conflict (.new)", name, note, merge_name, side.regions, side.new_holds_yours
    )


def resolve_update(
    project: Path,
    git: Git,
    renders: Renders,
    outcome: Outcome,
    answers_file: str,
    settled: frozenset[str] = frozenset(),
) -> None:
    """Turn the state Copier's merge left into the promised one (see the package docstring).

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
    pending: list[Sides] = []
    version = outcome.version_to

    for path, stages in sorted(unmerged.items()):
        ours = git.head_blob(path) or b""
        if 3 not in stages:
            # Copier marks no conflict for a file the template deleted, but be sure.
            restore.add(path)
            outcome.entries.append(Entry(path, "kept"))
            continue
        base = git.blob(stages[1]) if 1 in stages else b""
        theirs = git.blob(stages[3])
        new = merge_toward_template(ours, base, theirs)
        pending.append(sides(path, new, ours, base, theirs, version))

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
        ours, theirs = git.head_blob(path) or b"", new.read_bytes()
        toward_template = merge_toward_template(ours, base or b"", theirs)
        pending.append(sides(path, toward_template, ours, base or b"", theirs, version))

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
            # Both changes merged cleanly: FILE.new holds them all, and needs no FILE.merge.
            pending.append(Sides(path, (project / path).read_bytes(), new_holds_yours=True))
        else:
            outcome.entries.append(Entry(path, "merged"))

    # Everything untracked now came from the template: Copier refuses to update a tree
    # with untracked files in it.
    for path in sorted(untracked):
        outcome.entries.append(Entry(path, "added"))

    restore.update(side.path for side in pending)
    git.restore_from_head(restore)
    for side in pending:
        merged_cleanly = side.path not in unmerged and f"{side.path}.rej" not in rejects
        strict_note = ""
        if outcome.strict and merged_cleanly:
            strict_note = "strict mode: the changes would have merged"
        outcome.entries.append(write_sides(new_files, side, strict_note))

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
    pending: list[Sides] = []

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
        base = renders.base_content(path) if renders.base_ok else None
        if base != rendered:
            ours = git.head_blob(path) or b""
            pending.append(sides(path, rendered, ours, base, rendered, outcome.version_to))

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
    outcome.entries += [write_sides(new_files, side) for side in pending]
