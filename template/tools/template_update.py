"""Propose the template's newest release as a commit on its own branch.

    python3 -m tools.template_update check                  # is a newer release out?
    python3 -m tools.template_update apply --version v2     # update on a branch, commit

This is what .github/workflows/template-update.yml runs every week, and it runs the same
on your machine. `check` asks Copier whether the template this project came from has a
newer release and says so in one sentence. `apply` runs `copier update` to that release
(the template's update hook keeps every edit of yours and writes FILE.new where the two
sides collide), creates the branch template-update/VERSION, commits everything the update
wrote, FILE.new files included, since the pull request is where they get resolved, and
writes the pull request's body: a short header and the update's own report.

Inside GitHub Actions (GITHUB_OUTPUT set) both also write their results as step outputs.
Only the standard library is used, so this runs under any python3 from the project root
without the backend's environment; Copier itself runs through uvx.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

# How the README's update command runs Copier (a test keeps the two the same): uvx brings
# Copier and the one extension the template needs without installing either.
COPIER = ("uvx", "--with", "copier-template-extensions", "copier")
ANSWERS_FILE = ".copier-answers.yml"
# Written by the template's update hook at every update; gitignored.
REPORT_FILE = ".copier-update-report.md"
# Gitignored, and written after the commit: the body describes the change, it is not one.
BODY_FILE = ".template-update-pr.md"
BRANCH_PREFIX = "template-update/"
# Copier's spellings of GitHub and GitLab repositories, as git URLs.
REPOSITORY_ALIASES = {"gh:": "https://github.com/", "gl:": "https://gitlab.com/"}
RELEASE_TAG = re.compile(r"^[vV]?(\d+(?:\.\d+)*)(.*)$")


class UpdateError(Exception):
    """A step failed; the message says what to do next."""


def git(*args: str) -> str:
    result = subprocess.run(  # noqa: S603 - git from PATH, arguments built here
        ["git", *args],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise UpdateError(f"`git {' '.join(args)}` failed: {result.stderr.strip()}")
    return result.stdout


def copier(*args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Run Copier through uvx; its messages go straight to the terminal or the CI log."""
    command = [*COPIER, *args]
    try:
        result = subprocess.run(  # noqa: S603 - the README's own Copier command
            command,
            stdout=subprocess.PIPE if capture else None,
            text=True,
            check=False,
        )
    except FileNotFoundError as error:
        raise UpdateError("uvx is not on PATH; install uv first: pip install uv") from error
    if result.returncode != 0:
        raise UpdateError(
            f"`{' '.join(command)}` failed with exit code {result.returncode}; "
            "Copier's message is above"
        )
    return result


def answer(key: str) -> str:
    """A value Copier recorded in the answers file (`_commit`, `_src_path`)."""
    path = Path(ANSWERS_FILE)
    if not path.is_file():
        raise UpdateError(f"no {ANSWERS_FILE} here; run this from the project's root")
    match = re.search(
        rf"^{re.escape(key)}:\s*['\"]?([^'\"\n]+?)['\"]?\s*$",
        path.read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    if match is None:
        raise UpdateError(f"{ANSWERS_FILE} records no {key}; Copier wrote it without one")
    return match.group(1)


def repository_url(source: str) -> str:
    """The git URL of the template's source as Copier recorded it (`gh:org/name`, a path)."""
    source = source.removeprefix("git+")
    for alias, base in REPOSITORY_ALIASES.items():
        if source.startswith(alias):
            name = source.removeprefix(alias).lstrip("/")
            return base + (name if name.endswith(".git") else f"{name}.git")
    if "://" in source or source.startswith("git@"):
        return source
    return str(Path(source).expanduser())


def normal_version(tag: str) -> str | None:
    """A release tag in the normal form Copier reports versions in (`v1.02` is 1.2)."""
    match = RELEASE_TAG.match(tag)
    if match is None:
        return None
    release = ".".join(str(int(part)) for part in match.group(1).split("."))
    return release + match.group(2).lower()


def release_tag(version: str) -> str | None:
    """The template's tag for a version Copier reported.

    Copier compares releases as PEP 440 versions and reports them that way (tag v2 is
    version 2), but `copier update --vcs-ref` and the branch name need the tag itself.
    """
    listing = git("ls-remote", "--tags", "--refs", repository_url(answer("_src_path")))
    tags = sorted(line.split("refs/tags/", 1)[1] for line in listing.splitlines() if line)
    return next((tag for tag in tags if tag == version or normal_version(tag) == version), None)


def write_outputs(**values: str) -> None:
    """Step outputs for the workflow's later steps, when GitHub Actions runs this."""
    output = os.environ.get("GITHUB_OUTPUT")
    if output:
        with Path(output).open("a", encoding="utf-8") as outputs:
            outputs.writelines(f"{name}={value}\n" for name, value in values.items())


def commit_message(version: str) -> str:
    return f"Update the project template to {version}"


def check() -> int:
    """Say whether a newer release is out; a newer one is an answer, not an error."""
    result = copier("check-update", "--output-format", "json", capture=True)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    try:
        status = json.loads(lines[-1])
        available = bool(status["update_available"])
        latest = str(status["latest_version"])
    except (IndexError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise UpdateError(
            f"copier check-update gave no result to read: {result.stdout!r}"
        ) from error
    current = answer("_commit")
    tag = release_tag(latest)
    if tag is None and available:
        raise UpdateError(
            f"Copier reports template version {latest}, but no tag of the template names "
            "it; run `python3 -m tools.template_update apply --version TAG` with its tag"
        )
    version = tag or latest
    if available:
        print(f"template {version} is out; this project is on {current}")
    else:
        print(f"template {current} is current")
    write_outputs(
        available="true" if available else "false",
        version=version,
        branch=BRANCH_PREFIX + version,
    )
    return 0


def pull_request_body(version_from: str, version_to: str, report: str) -> str:
    header = (
        f"This updates the project template from {version_from} to {version_to} with "
        "`copier update` and the template's update hook (proposed by "
        "`python3 -m tools.template_update apply`).\n"
        "\n"
        "Where the report below lists a FILE.new, your FILE is kept as it was and the "
        "template's version is beside it (with FILE.merge holding both sides where the "
        "two changed the same lines): finish each one as the report's next steps show, "
        "then push the result to this branch before merging.\n"
    )
    return f"{header}\n{report}"


def apply(version: str, body_file: Path) -> int:
    """Update to `version` and commit it on its own branch, with the pull request's body."""
    if git("status", "--porcelain", "--untracked-files=all"):
        raise UpdateError(
            "the working tree has uncommitted changes (`git status` lists them); commit or "
            "stash them first: the update needs a clean tree"
        )
    branch = BRANCH_PREFIX + version
    if git("branch", "--list", branch):
        raise UpdateError(
            f"the branch {branch} exists already; review it, or delete it "
            f"(git branch -D {branch}) to propose the update again"
        )
    version_from = answer("_commit")
    # The body must carry this update's report, never one an earlier update left.
    Path(REPORT_FILE).unlink(missing_ok=True)
    try:
        copier("update", "--trust", "--defaults", "--vcs-ref", version)
    except UpdateError as error:
        raise UpdateError(
            f"{error}. The tree was clean before the update: `git reset --hard` and "
            "`git clean -fd` bring it back"
        ) from error

    if not git("status", "--porcelain", "--untracked-files=all"):
        print(f"nothing to propose: template {version} changes nothing in this project")
        write_outputs(proposed="false")
        return 0
    report = Path(REPORT_FILE)
    if not report.is_file():
        raise UpdateError(
            f"the update wrote no {REPORT_FILE}, so the reviewer would get no list of what "
            f"it did; is {version} a release of this project's template?"
        )

    # The branch starts at HEAD and takes the update's changes along; made only now, so
    # that an update which changes nothing leaves no branch behind.
    git("switch", "--create", branch)
    git("add", "--all")
    # The commit records exactly what the update wrote, FILE.new files included, which a
    # pre-commit hook would reformat or refuse; the pull request's CI checks the result.
    git("commit", "--quiet", "--no-verify", "--message", commit_message(version))
    body = pull_request_body(version_from, version, report.read_text(encoding="utf-8"))
    body_file.write_text(body, encoding="utf-8")
    print(f"committed the update to {version} on the branch {branch}")
    print(f"the pull request's body is in {body_file}")
    write_outputs(
        proposed="true",
        branch=branch,
        title=commit_message(version),
        body_file=str(body_file),
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="say whether a newer template release is out")
    apply_parser = commands.add_parser(
        "apply", help="update to a release on a new branch and commit it"
    )
    apply_parser.add_argument("--version", required=True, help="the release's tag, such as v2")
    apply_parser.add_argument(
        "--body-file",
        type=Path,
        default=Path(BODY_FILE),
        help=f"where to write the pull request's body (default: {BODY_FILE}, gitignored)",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return check()
        return apply(args.version, args.body_file)
    except UpdateError as error:
        print(f"template update: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
