"""Versioned templates and git projects for the update tests.

`copier update` needs a git-versioned template with tags and a project committed in git;
these helpers build both inside the tests and run Copier's real command line, the way a
user runs it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from template_tools import git, template_snapshot

IDENTITY = ("-c", "user.name=dayone tests", "-c", "user.email=tests@dayone.invalid")
REPORT = ".copier-update-report.md"
# Set by a git hook that runs these tests, they would point every git call at one repo.
REPOSITORY_VARIABLES = frozenset({"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"})


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "--all")
    git(repo, *IDENTITY, "commit", "--quiet", "--no-verify", "--allow-empty", "-m", message)


def tag(repo: Path, name: str) -> None:
    git(repo, *IDENTITY, "tag", "--annotate", "-m", name, name)


def copier(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run Copier's command line; fail with its output when it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "copier", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env=env or copier_env(),
        timeout=600,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"copier {' '.join(args)} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
        )
    return result


def versioned_template(destination: Path) -> Path:
    """A clone of the template's working tree (see `template_snapshot`), tagged v1."""
    subprocess.run(
        ["git", "clone", "--quiet", str(template_snapshot()), str(destination)], check=True
    )
    tag(destination, "v1")
    return destination


def status(project: Path) -> dict[str, str]:
    """`git status --porcelain` as {path: two-letter code}."""
    output = git(project, "status", "--porcelain", "-z", "--untracked-files=all")
    entries = [entry for entry in output.split("\0") if entry]
    return {entry[3:]: entry[:2] for entry in entries}


def report_rows(project: Path) -> set[tuple[str, str]]:
    """(change, file) pairs of the saved report's table."""
    text = (project / REPORT).read_text(encoding="utf-8")
    rows = set()
    for line in text.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 3 and cells[0] not in {"change", "---"}:
            rows.add((cells[0], cells[1]))
    return rows


def replace_line(path: Path, old: str, new: str) -> None:
    """Replace one whole line; fail loudly when the template no longer has it."""
    lines = path.read_text(encoding="utf-8").split("\n")
    assert old in lines, f"{path} no longer has the line {old!r}"
    lines[lines.index(old)] = new
    path.write_text("\n".join(lines), encoding="utf-8")


def first_line(path: Path) -> str:
    return path.read_text(encoding="utf-8").split("\n", 1)[0]


def last_revision(versions: Path) -> tuple[str, str]:
    """(revision id, next numeric id) of the newest migration the template ships."""
    revisions = {}
    for script in versions.glob("*.py"):
        match = re.search(r'^revision: str = "(\d+)"', script.read_text(), re.MULTILINE)
        if match:
            revisions[int(match.group(1))] = match.group(1)
    newest = max(revisions)
    width = len(revisions[newest])
    return revisions[newest], str(newest + 1).zfill(width)


REVISION_SCRIPT = '''"""{message}

Revision ID: {revision}
Revises: {down_revision}
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "{revision}"
down_revision: str | None = "{down_revision}"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
{upgrade}


def downgrade() -> None:
{downgrade}
'''


def add_revision(versions: Path, slug: str, message: str, upgrade: str, downgrade: str) -> Path:
    """A numbered revision after the newest the template ships, as the template writes
    them; `upgrade` and `downgrade` are the bodies of those functions, indented."""
    down_revision, revision = last_revision(versions)
    script = versions / f"{revision}_{slug}.py"
    script.write_text(
        REVISION_SCRIPT.format(
            message=message,
            revision=revision,
            down_revision=down_revision,
            upgrade=upgrade,
            downgrade=downgrade,
        ),
        encoding="utf-8",
    )
    return script


def add_nickname_column(template: Path) -> str:
    """The v2 model change and the migration that goes with it; returns the migration."""
    user_model = template / "template/backend/app/models/user.py"
    lines = user_model.read_text(encoding="utf-8").split("\n")
    anchor = next(index for index, line in enumerate(lines) if "full_name: Mapped" in line)
    lines.insert(anchor + 1, "    nickname: Mapped[str | None] = mapped_column(String(64))")
    user_model.write_text("\n".join(lines), encoding="utf-8")
    script = add_revision(
        template / "template/backend/alembic/versions",
        "user_nickname",
        "Users get an optional nickname.",
        '    with op.batch_alter_table("users") as batch:\n'
        '        batch.add_column(sa.Column("nickname", sa.String(length=64), nullable=True))',
        '    with op.batch_alter_table("users") as batch:\n        batch.drop_column("nickname")',
    )
    return f"backend/alembic/versions/{script.name}"


def update(
    project: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`copier update --defaults --trust`, as a user runs it from the project."""
    return copier("update", "--defaults", "--trust", *extra, cwd=project, env=env)


def generate(template: Path, destination: Path, ref: str, answers: Sequence[str] = ()) -> Path:
    """`copier copy` of one template version, committed by the post-copy hook."""
    data = [
        "init_git=true",
        "author_name=dev",
        "author_email=dev@example.com",
        *answers,
    ]
    options = [item for pair in data for item in ("-d", pair)]
    copier(
        "copy", "--defaults", "--trust", "--vcs-ref", ref, *options, str(template), str(destination)
    )
    return destination


def copier_env(**extra: str) -> dict[str, str]:
    """The environment for Copier: its scratch repositories commit, so git needs a name."""
    env = {key: value for key, value in os.environ.items() if key not in REPOSITORY_VARIABLES}
    env.update(
        GIT_AUTHOR_NAME="dayone tests",
        GIT_AUTHOR_EMAIL="tests@dayone.invalid",
        GIT_COMMITTER_NAME="dayone tests",
        GIT_COMMITTER_EMAIL="tests@dayone.invalid",
        **extra,
    )
    return env


def resolve_markers(text: str, keep: str) -> str:
    """A FILE.merge with every marked region resolved to "yours", "template" or "both"
    (yours first), the way a user resolves one by hand."""
    kept: list[str] = []
    side: str | None = None
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\n")
        if side is None and line.startswith("<<<<<<< "):
            side = "yours"
        elif side == "yours" and bare == "=======":
            side = "template"
        elif side == "template" and line.startswith(">>>>>>> "):
            side = None
        elif side is None or keep in {side, "both"}:
            kept.append(line)
    assert side is None, "a marked region is not closed"
    return "".join(kept)


def files_aside(project: Path, path: str) -> tuple[str, str | None]:
    """The FILE.new and FILE.merge the report names for `path` (FILE.2.new and so on
    where the user has a file of that name)."""
    text = (project / REPORT).read_text(encoding="utf-8")
    row = next(
        line for line in text.splitlines() if line.startswith(f"| conflict (.new) | {path} |")
    )
    new = re.search(r"the template's version is in (\S+?);? ", row + " ")
    merge = re.search(r"both sides(?:, merged,)? in (\S+?)[ |]", row)
    assert new, row
    return new.group(1), merge.group(1) if merge else None


def assert_merge_holds_both_sides(project: Path, path: str, yours: bytes) -> None:
    """FILE.merge loses nothing: with every region resolved to one side it is that side,
    the user's file (`yours`) or the template's side in FILE.new."""
    new, merge_name = files_aside(project, path)
    assert merge_name, f"the report names no FILE.merge for {path}"
    merge = (project / merge_name).read_text(encoding="utf-8")
    assert "<<<<<<< yours\n" in merge and ">>>>>>> template " in merge
    assert resolve_markers(merge, "yours").encode() == yours
    template_side = (project / new).read_text(encoding="utf-8")
    assert resolve_markers(merge, "template") == template_side
