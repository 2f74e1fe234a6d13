"""Safe regeneration: applying the template again never loses an edit the user made.

Copier runs hooks/post_update.py, this package's entry point, after every `copier update`
(an unversioned `_migrations` entry in the "after" stage, see copier.yml), from the
project's directory, once it has merged the user's changes into the new template version.
At that point HEAD still holds the user's own version of every file, and:

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
   packages the user had left at the template's pins (see `lock.settle_lock`);
7. a report is printed as a table and saved as .copier-update-report.md;
8. when the models or the migrations changed, the project's migrations helper says
   whether they still agree.

hooks/post_copy.py calls `protect_regeneration` when the generator runs again over an
existing git project (`copier recopy --overwrite`, or `copier copy --overwrite` into it):
there is no merge then, so every file the user changed keeps the user's version and the
freshly rendered one goes to FILE.new.

To tell the user's changes from the template's the hook needs the previous template
version rendered with the project's answers (and, for an update, at times the new one).
Copier deletes its own renders before the "after" stage runs, so hooks/pre_update.py
keeps Copier's render of the previous version in the "before" stage; where there is none
to keep (a copy, an older Copier), the hook renders it into a scratch directory itself.

One module per step: resolve.py (points 1 to 5; newfiles.py chooses and records the
FILE.new names, renders.py makes the scratch copies), lock.py (6), report.py (7) and
schema.py (8). git.py runs git for all of them; outcome.py holds what they did.

Only the standard library is used: this runs under the Python that runs Copier, which
also renders those scratch copies (`python -m copier`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .git import Git
from .lock import LOCK_FILE, lock_sides, settle_lock
from .outcome import Outcome
from .renders import Job, Renders, answers_commit
from .report import API_DOCUMENT, API_DOCUMENT_NOTICE, finish
from .resolve import resolve_regeneration, resolve_update

__all__ = ["finish", "protect_regeneration", "run_update"]


def version_label(env_name: str, fallback: str | None) -> str:
    return os.environ.get(env_name) or fallback or "unknown"


def resolve_with_lock(
    project: Path,
    git: Git,
    renders: Renders,
    template: str,
    new_job: Job,
    outcome: Outcome,
    resolve: Callable[[frozenset[str]], None],
) -> None:
    """Settle the tree with `resolve`, leaving backend/uv.lock to its own step, which
    re-resolves it instead of merging it (see `settle_lock`)."""
    sides = lock_sides(project, git, renders, template, new_job)
    resolve(frozenset({LOCK_FILE} if sides else ()))
    if sides:
        settle_lock(project, git, sides, outcome)


def run_update(project: Path, template: str, answers_file: str, strict: bool) -> Outcome:
    """Settle the tree `copier update` left; the caller reports the outcome (`finish`)."""
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
        # The previous version's render is Copier's own where hooks/pre_update.py kept it.
        base_jobs = [] if renders.adopt_kept_base(git, head_answers) else [base_job]
        if rejects or git.has_deletions():
            renders.load(template, [*base_jobs, new_job])
        else:
            renders.load(template, base_jobs)
            if set(renders.base) - git.head_files():
                renders.load(template, [new_job])
        outcome.warnings += renders.errors
        if not renders.base_ok:
            outcome.warnings.append(
                "without the previous template version every file the template touched "
                "counts as changed by you: nothing of yours is lost, but more files are "
                "kept or sent to .new than needed"
            )
        resolve_with_lock(
            project,
            git,
            renders,
            template,
            new_job,
            outcome,
            lambda settled: resolve_update(project, git, renders, outcome, answers_file, settled),
        )
        if any(entry.path == API_DOCUMENT for entry in outcome.entries):
            outcome.warnings.append(API_DOCUMENT_NOTICE)
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
        resolve_with_lock(
            project,
            git,
            renders,
            template,
            new_job,
            outcome,
            lambda settled: resolve_regeneration(
                project, git, renders, outcome, answers_file, settled
            ),
        )
    finally:
        renders.cleanup()
    finish(project, outcome)
    return outcome
