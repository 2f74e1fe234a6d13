"""`copier update` (and a second generation over a project) never loses a user's edit.

The template is built inside the tests as a git repository tagged v1, then v2 with a
scripted set of changes; a project generated from v1 gets its user's edits and is
updated with Copier's own command line, and every outcome the update hook promises
(hooks/update/__init__.py) is checked on the files, in `git status` and in the report.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from copier import run_copy, run_update
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from template_tools import TEMPLATE_DIR, UV, ProjectEnv, git
from update_support import (
    REPORT,
    add_nickname_column,
    assert_merge_holds_both_sides,
    commit,
    copier,
    copier_env,
    files_aside,
    generate,
    replace_line,
    report_rows,
    status,
    tag,
    update,
    versioned_template,
)

API_DOCUMENT_TEMPLATE = "openapi.json.jinja"
RBAC = "backend/app/core/rbac.py"  # both sides change its first line: a conflict
ERRORS = "backend/app/core/errors.py"  # the template's first line, the user's last: merges
DB_MODULE = "backend/app/core/db.py"  # only the template changes it
LICENSE = "LICENSE"  # the template removes it, the user had edited it
DOCKERIGNORE = ".dockerignore"  # the template removes it, the user had not touched it
PRE_COMMIT = ".pre-commit-config.yaml"  # the user deletes it, the template changes it
FLAGS = "backend/app/core/feature_flags.py"  # new in v2
USER_MODEL = "backend/app/models/user.py"  # v2 adds a column, with its migration
OWN_NEW = "notes.new"  # the user's own file that happens to end in .new

FLAGS_SOURCE = '''"""Feature switches read from the settings (new in template v2)."""

ENABLED_BY_DEFAULT: frozenset[str] = frozenset()
'''


def prefix_first_line(path: Path, prefix: str) -> None:
    """Insert `prefix` after the opening quotes of the module docstring on line 1."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith('"""'), f"{path} no longer starts with a docstring"
    path.write_text(f'"""{prefix}{text[3:]}', encoding="utf-8")


@dataclass(frozen=True)
class Versions:
    template: Path
    migration: str  # the v2 migration's path in a generated project


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> Versions:
    repo = versioned_template(tmp_path_factory.mktemp("versions") / "dayone")
    source = repo / "template"
    prefix_first_line(source / RBAC, "Template v2: ")
    prefix_first_line(source / ERRORS, "Template v2: ")
    prefix_first_line(source / DB_MODULE, "Template v2: ")
    (source / "LICENSE.jinja").unlink()
    (source / DOCKERIGNORE).unlink()
    with (source / PRE_COMMIT).open("a", encoding="utf-8") as config:
        config.write("# Template v2 checks more.\n")
    (source / FLAGS).write_text(FLAGS_SOURCE, encoding="utf-8")
    # The API document changes with the code: the report says to write it again.
    replace_line(source / API_DOCUMENT_TEMPLATE, '    "version": "0.1.0"', '    "version": "0.2.0"')
    migration = add_nickname_column(repo)
    commit(repo, "template v2")
    tag(repo, "v2")
    # v3 only rewords the conflicting line again: the second update of a project.
    prefix_first_line(source / RBAC, "Template v3: ")
    commit(repo, "template v3")
    tag(repo, "v3")
    return Versions(repo, migration)


def make_user_edits(project: Path) -> dict[str, bytes]:
    """The user's work on a v1 project, committed; returns what the user wrote."""
    prefix_first_line(project / RBAC, "Our roles: ")
    with (project / ERRORS).open("a", encoding="utf-8") as errors:
        errors.write("\n# Our error codes are documented in the wiki.\n")
    with (project / LICENSE).open("a", encoding="utf-8") as license_file:
        license_file.write("\nPortions licensed to Example Corp under contract 42.\n")
    (project / PRE_COMMIT).unlink()
    (project / OWN_NEW).write_text("My own notes, not a template leftover.\n", encoding="utf-8")
    commit(project, "our changes")
    return {path: (project / path).read_bytes() for path in (RBAC, ERRORS, LICENSE, OWN_NEW)}


@dataclass(frozen=True)
class Updated:
    project: Path
    written: dict[str, bytes]
    stdout: str


def updated_copy(source: Updated, destination: Path) -> Updated:
    shutil.copytree(source.project, destination, symlinks=True)
    return Updated(destination, source.written, source.stdout)


@pytest.fixture(scope="module")
def v1_project(versions: Versions, tmp_path_factory: pytest.TempPathFactory) -> Updated:
    project = generate(versions.template, tmp_path_factory.mktemp("v1") / "app", "v1")
    written = make_user_edits(project)
    return Updated(project, written, "")


@pytest.fixture(scope="module")
def updated(
    v1_project: Updated,
    versions: Versions,
    project_env: ProjectEnv,
    tmp_path_factory: pytest.TempPathFactory,
) -> Updated:
    """The v1 project with the user's edits, updated to v2 with the backend env in place."""
    project = updated_copy(v1_project, tmp_path_factory.mktemp("v2") / "app").project
    # The migrations helper runs during the update only where the backend's environment
    # exists already, as it does on a developer's machine: create it first.
    project_env.run(project, "python", "-c", "import app.models")
    # The shipped lock served the install as it is: nothing uv wrote blocks the update.
    assert git(project, "status", "--porcelain") == ""
    env = copier_env(**project_env.env("3.11"))
    env["PATH"] = f"{Path(UV).parent}{os.pathsep}{env.get('PATH', '')}"
    result = update(project, "--vcs-ref", "v2", env=env)
    return Updated(project, v1_project.written, result.stdout)


def test_a_conflict_keeps_the_users_file_and_puts_the_templates_side_in_dot_new(
    updated: Updated, versions: Versions
) -> None:
    project = updated.project
    assert (project / RBAC).read_bytes() == updated.written[RBAC]
    template_side = (project / f"{RBAC}.new").read_text(encoding="utf-8")
    assert template_side.startswith('"""Template v2: ')
    assert "Our roles: " not in template_side
    assert "<<<<<<<" not in template_side
    assert ">>>>>>>" not in template_side
    # Nothing of the template's is lost: FILE.new is the template's new version.
    v2 = git(versions.template, "show", f"v2:template/{RBAC}")
    assert template_side == v2
    # Nor of either side in FILE.merge, whose one marked region is the first line.
    assert_merge_holds_both_sides(project, RBAC, updated.written[RBAC])
    assert (project / f"{RBAC}.merge").read_text(encoding="utf-8").count("<<<<<<< ") == 1


def test_git_status_shows_the_promised_state(updated: Updated, versions: Versions) -> None:
    changes = status(updated.project)
    assert changes == {
        ".copier-answers.yml": " M",
        ERRORS: " M",
        DB_MODULE: " M",
        USER_MODEL: " M",
        "openapi.json": " M",
        DOCKERIGNORE: " D",
        f"{RBAC}.new": "??",
        f"{RBAC}.merge": "??",
        FLAGS: "??",
        versions.migration: "??",
    }
    unmerged = git(updated.project, "ls-files", "--unmerged")
    assert unmerged == ""


def test_clean_merges_keep_both_sides(updated: Updated) -> None:
    merged = (updated.project / ERRORS).read_text(encoding="utf-8")
    assert merged.startswith('"""Template v2: ')
    assert merged.endswith("\n# Our error codes are documented in the wiki.\n")
    assert (updated.project / DB_MODULE).read_text(encoding="utf-8").startswith('"""Template v2: ')


def test_removed_files_are_kept_only_when_the_user_modified_them(updated: Updated) -> None:
    assert (updated.project / LICENSE).read_bytes() == updated.written[LICENSE]
    assert not (updated.project / DOCKERIGNORE).exists()


def test_user_deletions_and_own_dot_new_files_are_left_alone(updated: Updated) -> None:
    assert not (updated.project / PRE_COMMIT).exists()
    assert (updated.project / OWN_NEW).read_bytes() == updated.written[OWN_NEW]
    assert (updated.project / FLAGS).read_text(encoding="utf-8") == FLAGS_SOURCE


def test_the_report_lists_every_outcome(updated: Updated, versions: Versions) -> None:
    rows = report_rows(updated.project)
    assert rows == {
        ("added", FLAGS),
        ("added", versions.migration),
        ("updated", DB_MODULE),
        ("updated", USER_MODEL),
        ("updated", "openapi.json"),
        ("merged", ERRORS),
        ("conflict (.new)", RBAC),
        ("kept", LICENSE),
        ("removed", DOCKERIGNORE),
        ("skipped", PRE_COMMIT),
    }
    text = (updated.project / REPORT).read_text(encoding="utf-8")
    assert "template 1 → 2" in text
    assert "`uv run --directory backend python -m app.cli openapi` and commit" in text
    assert f"your version kept; the template's version is in {RBAC}.new" in text
    assert "removed by the template, modified by you: kept" in text
    assert f"diff -u {RBAC} {RBAC}.new" in text
    assert f"both sides in {RBAC}.merge (1 region marked)" in text
    # Each way to finish the file is one command, with what it drops.
    assert f"mv {RBAC}.merge {RBAC} && rm {RBAC}.new" in text
    assert f"mv {RBAC}.new {RBAC} && rm {RBAC}.merge" in text
    assert f"rm {RBAC}.new {RBAC}.merge" in text
    assert "drops your side of the 1 region" in text
    assert "drops the template's change to this file" in text
    # The report is a review list for this update, not part of the project's history.
    assert REPORT not in status(updated.project)
    git(updated.project, "check-ignore", "--quiet", REPORT)


def test_the_table_is_printed_during_the_update(updated: Updated) -> None:
    assert "Template update report" in updated.stdout
    # One aligned row per file: change, file, what happened.
    printed = {tuple(line.split()[:3]) for line in updated.stdout.splitlines()}
    assert ("conflict", "(.new)", RBAC) in printed
    assert ("merged", ERRORS, "your") in printed
    assert ("kept", LICENSE, "removed") in printed
    assert f"diff -u {RBAC} {RBAC}.new" in updated.stdout
    assert f"saved in {REPORT}" in updated.stdout


def test_the_migrations_helper_checks_the_new_model_and_migration(
    updated: Updated, versions: Versions
) -> None:
    text = (updated.project / REPORT).read_text(encoding="utf-8")
    database = text.split("## Database", 1)[1]
    assert USER_MODEL in database
    assert versions.migration in database
    assert "tools.migrations_helper" in database
    # v2 ships the migration with the model change: the helper finds them in agreement.
    assert "The models and the migrations agree" in database


@pytest.fixture
def committed(updated: Updated, tmp_path: Path) -> Iterator[Updated]:
    """A copy of the updated project whose user committed everything, .new included."""
    copy = updated_copy(updated, tmp_path / "app")
    commit(copy.project, "update to template v2")
    yield copy


def test_a_second_update_replaces_the_earlier_dot_new(committed: Updated) -> None:
    project = committed.project
    update(project, "--vcs-ref", "v3")
    template_side = (project / f"{RBAC}.new").read_text(encoding="utf-8")
    assert template_side.startswith('"""Template v3: Template v2: ')
    assert (project / RBAC).read_bytes() == committed.written[RBAC]
    assert status(project) == {
        ".copier-answers.yml": " M",
        f"{RBAC}.new": " M",
        f"{RBAC}.merge": " M",
    }
    assert report_rows(project) == {("conflict (.new)", RBAC)}
    assert "replaces the .new file of an earlier update" in (project / REPORT).read_text()
    assert_merge_holds_both_sides(project, RBAC, committed.written[RBAC])
    assert (project / OWN_NEW).read_bytes() == committed.written[OWN_NEW]


def test_an_update_without_template_changes_changes_nothing(committed: Updated) -> None:
    project = committed.project
    update(project, "--vcs-ref", "v2")
    assert status(project) == {}
    text = (project / REPORT).read_text(encoding="utf-8")
    assert "Nothing changed" in text
    assert report_rows(project) == set()
    # The .new file of the first update is still the user's to review, and still the hook's.
    waiting = f"Still waiting for your review from an earlier update: {RBAC}.merge, {RBAC}.new"
    assert waiting in text


def test_a_strict_project_sends_every_file_both_sides_changed_to_dot_new(
    versions: Versions, tmp_path: Path
) -> None:
    project = generate(versions.template, tmp_path / "app", "v1", ["strict_updates=true"])
    written = make_user_edits(project)
    update(project, "--vcs-ref", "v2")
    # The edits would have merged cleanly; strict mode keeps the user's file anyway.
    assert (project / ERRORS).read_bytes() == written[ERRORS]
    merged = (project / f"{ERRORS}.new").read_text(encoding="utf-8")
    assert merged.startswith('"""Template v2: ')
    assert merged.endswith("\n# Our error codes are documented in the wiki.\n")
    assert (project / RBAC).read_bytes() == written[RBAC]
    rows = report_rows(project)
    assert ("conflict (.new)", ERRORS) in rows
    assert ("conflict (.new)", RBAC) in rows
    assert ("updated", DB_MODULE) in rows
    assert "strict mode: the changes would have merged" in (project / REPORT).read_text()
    changes = status(project)
    assert ERRORS not in changes
    assert changes[f"{ERRORS}.new"] == "??"
    assert changes[DB_MODULE] == " M"
    # FILE.new of a clean merge holds both sides already: it needs no FILE.merge.
    assert f"{ERRORS}.merge" not in changes
    assert_merge_holds_both_sides(project, RBAC, written[RBAC])
    assert (
        f"{ERRORS}.new holds your change and the template's, merged"
        in (project / REPORT).read_text()
    )


def test_strict_mode_can_be_switched_on_at_update_time(v1_project: Updated, tmp_path: Path) -> None:
    project = updated_copy(v1_project, tmp_path / "app").project
    update(project, "--vcs-ref", "v2", "-d", "strict_updates=true")
    assert (project / ERRORS).read_bytes() == v1_project.written[ERRORS]
    assert (project / f"{ERRORS}.new").is_file()
    assert "strict_updates: true" in (project / ".copier-answers.yml").read_text()


def test_recopy_keeps_the_users_files_and_offers_the_templates_as_dot_new(
    v1_project: Updated, versions: Versions, tmp_path: Path
) -> None:
    project = updated_copy(v1_project, tmp_path / "app").project
    copier("recopy", "--defaults", "--trust", "--overwrite", "--vcs-ref", "v2", cwd=project)
    written = v1_project.written
    for path in (RBAC, ERRORS):
        assert (project / path).read_bytes() == written[path]
        template_side = (project / f"{path}.new").read_text(encoding="utf-8")
        assert template_side == git(versions.template, "show", f"v2:template/{path}")
        # FILE.merge holds both: the template's change and the user's, which FILE.new,
        # a fresh render, has not.
        merged = (project / f"{path}.merge").read_text(encoding="utf-8")
        assert "Template v2: " in merged
        assert merged != template_side
    assert_merge_holds_both_sides(project, RBAC, written[RBAC])
    # The user's last line and the template's first merge without a marked region.
    assert "<<<<<<<" not in (project / f"{ERRORS}.merge").read_text(encoding="utf-8")
    assert (project / LICENSE).read_bytes() == written[LICENSE]
    assert (project / OWN_NEW).read_bytes() == written[OWN_NEW]
    assert not (project / PRE_COMMIT).exists()
    rows = report_rows(project)
    assert {
        ("conflict (.new)", RBAC),
        ("conflict (.new)", ERRORS),
        ("updated", DB_MODULE),
        ("skipped", PRE_COMMIT),
        ("added", FLAGS),
    } <= rows
    changes = status(project)
    assert RBAC not in changes
    assert changes[f"{RBAC}.new"] == "??"
    assert PRE_COMMIT not in changes


# Property: random user edits × random template changes on a small synthetic template that
# runs the real hook through the real `_migrations` entry of copier.yml. Each example is a
# whole generate / edit / update cycle, so the count is kept to what CI can afford.

FILE_COUNT = 4
LINES_PER_FILE = 12
EXAMPLES = int(os.environ.get("UPDATE_PROPERTY_EXAMPLES", "15"))

# What one side does to one template file.
KEEP, MODIFY, INSERT, DELETE = "keep", "modify", "insert", "delete"
side_change = st.tuples(
    st.sampled_from([KEEP, MODIFY, INSERT, DELETE]), st.integers(0, LINES_PER_FILE - 1)
)


def original_lines(index: int) -> list[str]:
    return [f"file {index} line {number}" for number in range(LINES_PER_FILE)]


def apply_change(path: Path, change: tuple[str, int], token: str) -> str | None:
    """Apply one side's change to a file; return the line it wrote, if any."""
    action, line = change
    if action == KEEP:
        return None
    if action == DELETE:
        path.unlink()
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    if action == MODIFY:
        lines[line] = token
    else:
        lines.insert(line + 1, token)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return token


@functools.cache
def synthetic_config() -> str:
    """copier.yml of the synthetic template: the real hook entry and strict question."""
    real = yaml.safe_load((TEMPLATE_DIR / "copier.yml").read_text(encoding="utf-8"))
    config = {
        "_subdirectory": "template",
        "_migrations": real["_migrations"],
        "strict_updates": real["strict_updates"],
    }
    return yaml.safe_dump(config, sort_keys=False)


def build_synthetic_template(
    root: Path, template_changes: list[tuple[str, int]], template_adds: bool
) -> dict[str, str]:
    """A tagged v1/v2 template repo; returns {file: line v2 wrote} for the changed files."""
    # The hooks as the template ships them: the entry script and the package it runs.
    shutil.copytree(
        TEMPLATE_DIR / "hooks", root / "hooks", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "copier.yml").write_text(synthetic_config(), encoding="utf-8")
    source = root / "template"
    source.mkdir()
    (source / "{{ _copier_conf.answers_file }}.jinja").write_text(
        "{{ _copier_answers|to_nice_yaml -}}\n", encoding="utf-8"
    )
    (source / ".gitignore").write_text(f"{REPORT}\n", encoding="utf-8")
    for index in range(FILE_COUNT):
        (source / f"f{index}.txt").write_text(
            "\n".join(original_lines(index)) + "\n", encoding="utf-8"
        )
    git(root, "init", "--quiet", "--initial-branch=main")
    commit(root, "v1")
    tag(root, "v1")
    written = {}
    for index, change in enumerate(template_changes):
        token = apply_change(
            source / f"f{index}.txt", change, f"template v2 wrote this in f{index}"
        )
        if token:
            written[f"f{index}.txt"] = token
    if template_adds:
        (source / "added.txt").write_text("new in template v2\n", encoding="utf-8")
    commit(root, "v2")
    tag(root, "v2")
    return written


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    # Examples are whole template repositories; replaying stored ones is not worth a
    # .hypothesis/ directory in the template's checkout.
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    template_changes=st.lists(side_change, min_size=FILE_COUNT, max_size=FILE_COUNT),
    user_changes=st.lists(side_change, min_size=FILE_COUNT, max_size=FILE_COUNT),
    template_adds=st.booleans(),
    user_adds_own_new_file=st.booleans(),
    strict=st.booleans(),
    # How Copier leaves what it cannot merge: markers in the file, or FILE.rej beside it.
    conflict=st.sampled_from(["inline", "rej"]),
)
def test_no_user_byte_and_no_template_change_is_lost(
    template_changes: list[tuple[str, int]],
    user_changes: list[tuple[str, int]],
    template_adds: bool,
    user_adds_own_new_file: bool,
    strict: bool,
    conflict: str,
) -> None:
    with tempfile.TemporaryDirectory(prefix="dayone-property-") as scratch:
        root = Path(scratch)
        template = root / "template-repo"
        template_wrote = build_synthetic_template(template, template_changes, template_adds)
        project = root / "project"
        run_copy(
            str(template),
            str(project),
            data={"strict_updates": strict},
            defaults=True,
            unsafe=True,
            vcs_ref="v1",
            quiet=True,
        )
        git(project, "init", "--quiet", "--initial-branch=main")
        commit(project, "generated")

        user_wrote: dict[str, str] = {}
        user_deleted: set[str] = set()
        for index, change in enumerate(user_changes):
            name = f"f{index}.txt"
            token = apply_change(project / name, change, f"the user wrote this in f{index}")
            if token:
                user_wrote[name] = token
            if change[0] == DELETE:
                user_deleted.add(name)
        own_files = {"mine.txt": b"the user's own file\n"}
        if user_adds_own_new_file:
            # Named like the hook's output for f0.txt: it must be left exactly as it is.
            own_files["f0.txt.new"] = b"the user's own .new file\n"
        for name, content in own_files.items():
            (project / name).write_bytes(content)
        commit(project, "user edits")
        committed = {
            name: (project / name).read_bytes() for name in user_wrote.keys() | own_files.keys()
        }

        run_update(
            str(project),
            defaults=True,
            unsafe=True,
            overwrite=True,
            quiet=True,
            vcs_ref="v2",
            conflict=conflict,
        )

        assert git(project, "ls-files", "--unmerged") == ""
        assert not [name for name in status(project) if name.endswith(".rej")]
        codes = set(status(project).values())
        assert not codes & {"UU", "AA", "DU", "UD", "AU", "UA", "DD"}
        rows = report_rows(project)
        # Only what the template really added is reported as its addition.
        added = {name for category, name in rows if category == "added"}
        assert added == ({"added.txt"} if template_adds else set())
        for path in project.rglob("*"):
            relative = path.relative_to(project)
            if path.is_file() and ".git" not in relative.parts and path.suffix != ".merge":
                lines = path.read_text(encoding="utf-8").splitlines()
                assert not [line for line in lines if line.startswith(("<<<<<<<", ">>>>>>>"))]
        # Markers are only in FILE.merge, which holds both sides of every marked region.
        for category, name in rows:
            merge_name = files_aside(project, name)[1] if category == "conflict (.new)" else None
            if merge_name and "<<<<<<< " in (project / merge_name).read_text(encoding="utf-8"):
                assert_merge_holds_both_sides(project, name, committed[name])

        # Nothing the user wrote is lost, and it stays in the file it was written in.
        for name, content in own_files.items():
            assert (project / name).read_bytes() == content
        for name, token in user_wrote.items():
            assert token in (project / name).read_text(encoding="utf-8").splitlines()
            if ("conflict (.new)", name) in rows:
                assert (project / name).read_bytes() == committed[name]
        for name in user_deleted:
            assert not (project / name).exists()

        # Every template change is applied or waits in a .new file.
        for name, token in template_wrote.items():
            if name in user_deleted:
                assert ("skipped", name) in rows
                continue
            candidates = [project / name, *project.glob(f"{name}*.new")]
            found = [
                path
                for path in candidates
                if path.is_file()
                and path.name not in own_files
                and token in path.read_text(encoding="utf-8").splitlines()
            ]
            assert found, f"template change to {name} lost"
        for index, change in enumerate(template_changes):
            name = f"f{index}.txt"
            if change[0] == DELETE and name not in user_deleted:
                if name in user_wrote:
                    assert ("kept", name) in rows
                    assert (project / name).read_bytes() == committed[name]
                else:
                    assert not (project / name).exists()
        if template_adds:
            assert (project / "added.txt").read_text(encoding="utf-8") == "new in template v2\n"


def test_conflicts_left_as_rej_files_end_the_same_way(tmp_path: Path) -> None:
    # `copier update --conflict rej` leaves FILE.rej beside a half-merged FILE instead of
    # markers in it; the outcome must not depend on that choice.
    template = tmp_path / "template-repo"
    changes = [(MODIFY, 3)] + [(KEEP, 0)] * (FILE_COUNT - 1)
    build_synthetic_template(template, changes, template_adds=False)
    project = tmp_path / "project"
    run_copy(str(template), str(project), defaults=True, unsafe=True, vcs_ref="v1", quiet=True)
    git(project, "init", "--quiet", "--initial-branch=main")
    commit(project, "generated")
    apply_change(project / "f0.txt", (MODIFY, 3), "the user wrote this in f0")
    commit(project, "user edits")
    committed = (project / "f0.txt").read_bytes()

    run_update(
        str(project),
        defaults=True,
        unsafe=True,
        overwrite=True,
        quiet=True,
        vcs_ref="v2",
        conflict="rej",
    )

    assert (project / "f0.txt").read_bytes() == committed
    assert "template v2 wrote this in f0" in (project / "f0.txt.new").read_text().splitlines()
    assert_merge_holds_both_sides(project, "f0.txt", committed)
    assert status(project) == {
        ".copier-answers.yml": " M",
        "f0.txt.new": "??",
        "f0.txt.merge": "??",
    }
    assert report_rows(project) == {("conflict (.new)", "f0.txt")}


def test_a_users_own_dot_new_after_ours_is_never_overwritten(tmp_path: Path) -> None:
    # The hook's f0.txt.new of one update, removed by the user, who then commits a file of
    # their own by that name: the next update's conflict must go elsewhere.
    template = tmp_path / "template-repo"
    changes = [(MODIFY, 3)] + [(KEEP, 0)] * (FILE_COUNT - 1)
    build_synthetic_template(template, changes, template_adds=False)
    project = tmp_path / "project"
    run_copy(str(template), str(project), defaults=True, unsafe=True, vcs_ref="v1", quiet=True)
    git(project, "init", "--quiet", "--initial-branch=main")
    commit(project, "generated")
    apply_change(project / "f0.txt", (MODIFY, 3), "the user wrote this in f0")
    commit(project, "user edits")
    options = {"defaults": True, "unsafe": True, "overwrite": True, "quiet": True}

    run_update(str(project), vcs_ref="v2", **options)
    assert ("conflict (.new)", "f0.txt") in report_rows(project)
    mine = b"the user's own notes, named like the hook's file\n"
    (project / "f0.txt.new").write_bytes(mine)
    commit(project, "the user's own f0.txt.new")

    apply_change(template / "template" / "f0.txt", (MODIFY, 3), "template v3 wrote this in f0")
    commit(template, "v3")
    tag(template, "v3")
    run_update(str(project), vcs_ref="v3", **options)

    assert (project / "f0.txt.new").read_bytes() == mine
    assert "template v3 wrote this in f0" in (project / "f0.txt.2.new").read_text().splitlines()
    assert "the user wrote this in f0" in (project / "f0.txt").read_text().splitlines()
