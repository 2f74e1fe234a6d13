"""From the tree Copier left to the one the package promises (its points 1 to 5).

`resolve_update` runs after `copier update` has merged; `resolve_regeneration` after a
copy over an existing project, where nothing was merged.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from .git import Git
from .newfiles import NewFiles, previous_new_files
from .outcome import Entry, Outcome
from .renders import Renders


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
