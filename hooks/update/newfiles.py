"""FILE.new and FILE.merge: where the template's side of a file goes (and, beside it,
both sides with conflict markers), and which such files are the hook's.

A FILE.new or FILE.merge the hook wrote at an earlier update may be replaced; any other
file of such a name is the user's and is never touched.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .git import Git

NEW_SUFFIX = ".new"
MERGE_SUFFIX = ".merge"
# The update report (report.py) also carries the record below.
REPORT_FILE = ".copier-update-report.md"
# The report records which .new files this hook wrote, and a digest of each, so that the
# next update can tell them from the user's own files with the same ending: a name alone
# would not do, since a user may commit a FILE.new of their own after removing ours.
RECORD_PREFIX = "<!-- dayone-update-new-files: "
RECORD_SUFFIX = " -->"


def record_line(record: dict[str, str]) -> str:
    """The report's line that records the hook's .new files and their digests."""
    return f"{RECORD_PREFIX}{json.dumps(record, sort_keys=True)}{RECORD_SUFFIX}"


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
    """Chooses and writes the FILE.new (or FILE.merge) that holds the template's side of a
    file (or both sides)."""

    def __init__(self, project: Path, git: Git, ours_before: set[str]) -> None:
        self.project = project
        self.git = git
        self.ours_before = ours_before
        self.written: set[str] = set()

    def write(self, path: str, content: bytes, suffix: str = NEW_SUFFIX) -> tuple[str, str]:
        """Write a side of `path` beside it; return the file's name and a report note."""
        candidates = [f"{path}{suffix}"]
        candidates += [f"{path}.{number}{suffix}" for number in range(2, 100)]
        for name in candidates:
            target = self.project / name
            if name in self.written:
                continue
            exists = target.exists() or target.is_symlink()
            if exists and name not in self.ours_before:
                # The user's own file: never touched.
                continue
            note = f"replaces the {suffix} file of an earlier update" if exists else ""
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            # An executable script's .new stays executable, so that `mv` takes it whole.
            target.chmod(self.git.head_mode(path))
            self.written.add(name)
            return name, note
        raise RuntimeError(f"no free name for the {suffix} file of {path}")
