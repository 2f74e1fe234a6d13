"""git, run in the project's directory the way every step of the hook needs it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path


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
