"""Scratch renders of template versions with the project's answers.

Copier deletes its own renders of the previous and the new template version before the
"after" stage runs; the hook makes its own, from the same template and answers, to tell
the user's changes from the template's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .git import Git


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


# Copier's own render of the previous version during `copier update`, in the temporary
# directory under one of these prefixes (copier/_main.py, `_apply_update`).
COPIER_OLD_COPY_PREFIXES = ("copier._main.old_copy.", "copier.main.old_copy.")
# Where hooks/pre_update.py keeps it, in the project's git directory.
KEPT_RENDER = "dayone-previous-render"


def kept_render_dir(git: Git) -> Path:
    return Path(git.run("rev-parse", "--absolute-git-dir").stdout.decode().strip()) / KEPT_RENDER


def keep_copiers_render(project: Path, answers_file: str) -> None:
    """Copy Copier's render of the previous version (the one whose answers file is the
    project's committed one) to where `Renders` finds it; keep nothing when it is not
    exactly one candidate."""
    git = Git(project)
    kept = kept_render_dir(git)
    shutil.rmtree(kept, ignore_errors=True)
    answers = git.head_blob(answers_file)
    if answers is None:
        return
    # A project in a subdirectory of its repository is rendered into that subdirectory.
    inside = git.run("rev-parse", "--show-prefix").stdout.decode().strip()
    scratch = Path(tempfile.gettempdir())
    found = [
        root
        for prefix in COPIER_OLD_COPY_PREFIXES
        for copy in scratch.glob(f"{prefix}*")
        if ((root := copy / inside) / answers_file).is_file()
        and (root / answers_file).read_bytes() == answers
    ]
    if len(found) == 1:
        shutil.copytree(found[0], kept, symlinks=True, ignore=shutil.ignore_patterns(".git"))


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

    def adopt_kept_base(self, git: Git, answers: bytes | None) -> bool:
        """Take the previous version's render hooks/pre_update.py kept from Copier's own,
        when it was rendered with `answers`; whether there was one."""
        kept = kept_render_dir(git)
        try:
            if answers is None or (kept / self.answers_file).read_bytes() != answers:
                return False
            shutil.move(kept, self.scratch / "base")
        except OSError:
            return False
        finally:
            shutil.rmtree(kept, ignore_errors=True)
        self.base, self.base_ok = rendered_files(self.scratch / "base", self.answers_file), True
        return True

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
