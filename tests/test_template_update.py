"""The generated project's template-update workflow, run step by step on this machine.

A template is built as a git repository tagged v1 (see update_support), a project is
generated from it and pushed to a bare repository that stands in for GitHub, and each
`run:` script of .github/workflows/template-update.yml is executed with bash in a fresh
clone of it, in order, with the step's `env:` and `if:` worked out as a runner would.
Copier (through uvx, as the README runs it), git and the push are real; only `gh` is a
stand-in, which records its arguments and answers `gh pr list` as the test tells it to.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from template_tools import UV, git
from test_infra import check_jsonschema, report
from test_readme_commands import shell_lines
from update_support import (
    REPOSITORY_VARIABLES,
    add_nickname_column,
    commit,
    copier_env,
    first_line,
    generate,
    replace_line,
    tag,
    versioned_template,
)

WORKFLOW = ".github/workflows/template-update.yml"
RBAC = "backend/app/core/rbac.py"  # the user and release v2 both reword its first line
BODY_FILE = ".template-update-pr.md"
REPORT_FILE = ".copier-update-report.md"
BRANCH = "template-update/v2"
LOCAL_COMMAND = "python3 -m tools.template_update"
# What the runner provides for the expressions the workflow uses.
RUNNER_CONTEXT = {"secrets.GITHUB_TOKEN": "test-token", "github.ref_name": "main"}
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
COMPARISON = re.compile(r"^([\w.-]+)\s*(==|!=)\s*'([^']*)'$")

FAKE_GH = '''\
#!{python}
"""A stand-in for the GitHub CLI: records each call; `gh pr list` prints FAKE_GH_OPEN."""
import json, os, sys
from pathlib import Path

args = sys.argv[1:]
call = {{"argv": args, "token": os.environ.get("GH_TOKEN")}}
if "--body-file" in args:
    call["body"] = Path(args[args.index("--body-file") + 1]).read_text(encoding="utf-8")
with open(os.environ["FAKE_GH_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps(call) + "\\n")
if args[:2] == ["pr", "list"]:
    print(os.environ["FAKE_GH_OPEN"])
'''


# The runner --------------------------------------------------------------------------------


def load_workflow(project: Path) -> dict[str, Any]:
    workflow: dict[str, Any] = yaml.safe_load((project / WORKFLOW).read_text(encoding="utf-8"))
    return workflow


def steps_of(workflow: Mapping[str, Any]) -> list[dict[str, Any]]:
    [job] = workflow["jobs"].values()
    steps: list[dict[str, Any]] = job["steps"]
    return steps


def lookup(reference: str, outputs: Mapping[str, Mapping[str, str]]) -> str:
    """A context value; a step that was skipped or never wrote an output gives ''."""
    parts = reference.split(".")
    if parts[0] == "steps":
        assert len(parts) == 4 and parts[2] == "outputs", f"unknown expression {reference!r}"
        return outputs.get(parts[1], {}).get(parts[3], "")
    assert reference in RUNNER_CONTEXT, f"the test provides no value for {reference!r}"
    return RUNNER_CONTEXT[reference]


def substitute(value: str, outputs: Mapping[str, Mapping[str, str]]) -> str:
    return EXPRESSION.sub(lambda match: lookup(match.group(1), outputs), value)


def condition_holds(condition: str, outputs: Mapping[str, Mapping[str, str]]) -> bool:
    """An `if:` made of `ref == 'text'` (or !=) comparisons joined by &&."""
    bare = EXPRESSION.fullmatch(condition.strip())
    expression = bare.group(1) if bare else condition
    holds = []
    for clause in expression.split("&&"):
        match = COMPARISON.match(clause.strip())
        assert match, f"the test cannot evaluate {clause.strip()!r}; teach condition_holds"
        reference, operator, text = match.groups()
        # GitHub compares strings without regard to case.
        equal = lookup(reference, outputs).casefold() == text.casefold()
        holds.append(equal if operator == "==" else not equal)
    return all(holds)


def read_outputs(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


@dataclass
class Gh:
    """The `gh` stand-in on PATH, with the open pull requests `gh pr list` reports."""

    directory: Path
    open_pull_requests: list[dict[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True)
        script = self.directory / "gh"
        script.write_text(FAKE_GH.format(python=sys.executable), encoding="utf-8")
        script.chmod(0o755)
        self.log = self.directory / "calls.jsonl"

    def env(self) -> dict[str, str]:
        return {"FAKE_GH_LOG": str(self.log), "FAKE_GH_OPEN": json.dumps(self.open_pull_requests)}

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]


def runner_env(gh: Gh) -> dict[str, str]:
    """A runner's environment: uv and `gh` on PATH, and no git identity of its own.

    Global and system git configuration are off, so the commit works only if the workflow
    itself provides an identity, as it must on a runner.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in REPOSITORY_VARIABLES | {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"}
        and not key.startswith(("GIT_", "GITHUB_", "PYTEST_"))
    }
    path = [str(gh.directory), str(Path(UV).parent), env.get("PATH", os.defpath)]
    env.update(
        PATH=os.pathsep.join(path),
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        **gh.env(),
    )
    return env


@dataclass
class JobRun:
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    printed: str = ""


def run_job(checkout: Path, gh: Gh, scratch: Path) -> JobRun:
    """Run the workflow's `run:` steps in `checkout` as a runner does.

    actions/checkout is the clone the caller made; setup-uv is uv on PATH.
    """
    run = JobRun()
    env = runner_env(gh)
    for number, step in enumerate(steps_of(load_workflow(checkout))):
        if "run" not in step:
            continue
        name = step.get("name", step["run"])
        if "if" in step and not condition_holds(step["if"], run.outputs):
            continue
        github_output = scratch / f"output-{number}"
        github_output.write_text("", encoding="utf-8")
        step_env = {
            key: substitute(str(value), run.outputs) for key, value in step.get("env", {}).items()
        }
        result = subprocess.run(
            # What `shell: bash` runs on a runner.
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=checkout,
            env={**env, **step_env, "GITHUB_OUTPUT": str(github_output)},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, f"step {name!r}: {report(result)}"
        run.ran.append(name)
        run.printed += result.stdout
        if "id" in step:
            run.outputs[step["id"]] = read_outputs(github_output)
    return run


# The template, the project and its hosting --------------------------------------------------


@dataclass(frozen=True)
class Hosted:
    template: Path  # the template's repository, tagged v1
    project: Path  # the developer's repository
    origin: Path  # a bare repository in GitHub's place


def host_a_v1_project(root: Path) -> Hosted:
    template = versioned_template(root / "dayone")
    project = generate(template, root / "app", "v1")
    origin = root / "origin.git"
    subprocess.run(
        ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(origin)], check=True
    )
    git(project, "remote", "add", "origin", str(origin))
    git(project, "push", "--quiet", "origin", "main")
    return Hosted(template, project, origin)


def checkout(hosted: Hosted, destination: Path) -> Path:
    """What actions/checkout with fetch-depth 0 leaves: a full clone on the default branch."""
    subprocess.run(["git", "clone", "--quiet", str(hosted.origin), str(destination)], check=True)
    return destination


def prefix_docstring(path: Path, prefix: str) -> str:
    """Reword the module docstring's first line; returns the new line."""
    old = first_line(path)
    assert old.startswith('"""'), f"{path} no longer starts with a docstring"
    new = f'"""{prefix}{old[3:]}'
    replace_line(path, old, new)
    return new


def branches(repository: Path) -> list[str]:
    return git(repository, "branch", "--format=%(refname:short)").split()


def developer_env() -> dict[str, str]:
    """A developer's shell: a git identity, uv on PATH, and not inside GitHub Actions."""
    env = copier_env()
    env["PATH"] = f"{Path(UV).parent}{os.pathsep}{env.get('PATH', os.defpath)}"
    env.pop("GITHUB_OUTPUT", None)
    return env


def run_locally(command: str, project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        shlex.split(command),
        cwd=project,
        env=developer_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def local_commands(project: Path) -> list[str]:
    readme = (project / "README.md").read_text(encoding="utf-8")
    return shell_lines(readme, LOCAL_COMMAND)


@pytest.fixture(scope="module")
def current(tmp_path_factory: pytest.TempPathFactory) -> Hosted:
    """A v1 project of a template with no later release; tests work on clones of it."""
    return host_a_v1_project(tmp_path_factory.mktemp("current"))


# The workflow file ---------------------------------------------------------------------------


@pytest.fixture
def project(render: Callable[..., Path]) -> Path:
    return render()


def test_workflow_matches_the_github_actions_schema(project: Path, tmp_path: Path) -> None:
    result = check_jsonschema("vendor.github-workflows", project / WORKFLOW, tmp_path)
    assert result.returncode == 0, report(result)


def test_workflow_runs_weekly_and_by_hand_with_the_rights_it_needs(project: Path) -> None:
    workflow = load_workflow(project)
    # YAML 1.1, which PyYAML reads, takes the key `on` for the boolean true.
    triggers = workflow[True]
    assert set(triggers) == {"schedule", "workflow_dispatch"}
    [schedule] = triggers["schedule"]
    assert len(schedule["cron"].split()) == 5
    assert workflow["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert "group" in workflow["concurrency"]


def test_scripts_take_expressions_only_through_env(project: Path) -> None:
    # A value spliced into a script by ${{ }} is run as code; one read from the
    # environment is only ever data.
    for step in steps_of(load_workflow(project)):
        assert "${{" not in step.get("run", ""), step.get("name")
        if "GH_TOKEN" in step.get("env", {}):
            assert step["env"]["GH_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"


def test_actions_are_pinned_as_in_ci(project: Path) -> None:
    ci = yaml.safe_load((project / ".github/workflows/ci.yml").read_text(encoding="utf-8"))
    pinned = {
        step["uses"] for job in ci["jobs"].values() for step in job["steps"] if "uses" in step
    }
    steps = steps_of(load_workflow(project))
    used = {step["uses"] for step in steps if "uses" in step}
    assert used == {"actions/checkout@v7", "astral-sh/setup-uv@v10.3.0"}
    assert used <= pinned
    [checkout_step] = [
        step for step in steps if step.get("uses", "").startswith("actions/checkout")
    ]
    assert checkout_step["with"]["fetch-depth"] == 0


def test_readmes_update_command_runs_copier_as_the_tool_does(project: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "generated_template_update", project / "tools" / "template_update.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    [update] = shell_lines((project / "README.md").read_text(encoding="utf-8"), "uvx ")
    assert shlex.split(update)[: len(module.COPIER)] == list(module.COPIER)
    assert shlex.split(update)[len(module.COPIER)] == "update"


def test_the_body_file_is_gitignored(project: Path) -> None:
    assert BODY_FILE in (project / ".gitignore").read_text(encoding="utf-8").splitlines()


def test_apply_refuses_a_dirty_tree(project: Path, tmp_path: Path) -> None:
    work = tmp_path / "app"
    shutil.copytree(project, work)
    git(work, "init", "--quiet", "--initial-branch=main")
    commit(work, "generated")
    (work / "notes.txt").write_text("not committed yet\n", encoding="utf-8")
    result = run_locally(f"{LOCAL_COMMAND} apply --version v2", work)
    assert result.returncode == 1, report(result)
    assert "uncommitted changes" in result.stderr
    assert "commit or stash them first" in result.stderr
    assert branches(work) == ["main"]


# Running it --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_current_project_gets_no_proposal(current: Hosted, tmp_path: Path) -> None:
    gh = Gh(tmp_path / "gh")
    run = run_job(checkout(current, tmp_path / "runner"), gh, tmp_path)
    assert run.outputs["check"]["available"] == "false"
    assert "template v1 is current" in run.printed
    assert run.ran == ["Check for a newer template release"]
    assert gh.calls() == []
    assert branches(current.origin) == ["main"]


@pytest.mark.slow
def test_the_readmes_local_commands_work_as_written(current: Hosted, tmp_path: Path) -> None:
    clone = checkout(current, tmp_path / "app")
    head = git(clone, "rev-parse", "HEAD")
    check, apply = local_commands(clone)
    assert check == f"{LOCAL_COMMAND} check"

    result = run_locally(check, clone)
    assert result.returncode == 0, report(result)
    assert result.stdout.strip() == "template v1 is current"
    # With the release `check` named; this project is on it already, so nothing changes.
    assert " --version v2" in apply
    result = run_locally(apply.replace(" --version v2", " --version v1"), clone)
    assert result.returncode == 0, report(result)
    assert "nothing to propose" in result.stdout
    assert git(clone, "rev-parse", "HEAD") == head
    assert branches(clone) == ["main"]
    assert git(clone, "status", "--porcelain") == ""


@pytest.mark.slow
def test_check_reports_a_copier_failure_in_one_line(current: Hosted, tmp_path: Path) -> None:
    clone = checkout(current, tmp_path / "app")
    answers = clone / ".copier-answers.yml"
    source = str(current.template)
    answers.write_text(answers.read_text().replace(source, str(tmp_path / "gone")))
    result = run_locally(f"{LOCAL_COMMAND} check", clone)
    assert result.returncode == 1, report(result)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("template update: `uvx --with copier-template-extensions copier "), last
    assert "Copier's message is above" in last


@pytest.mark.slow
def test_a_new_release_is_proposed_once_as_a_pull_request(tmp_path: Path) -> None:
    hosted = host_a_v1_project(tmp_path)
    ours = prefix_docstring(hosted.project / RBAC, "Our roles: ")
    commit(hosted.project, "our roles")
    git(hosted.project, "push", "--quiet", "origin", "main")
    main_head = git(hosted.project, "rev-parse", "HEAD").strip()

    theirs = prefix_docstring(hosted.template / "template" / RBAC, "Template v2: ")
    migration = add_nickname_column(hosted.template)
    commit(hosted.template, "template v2")
    tag(hosted.template, "v2")

    gh = Gh(tmp_path / "gh")
    run = run_job(checkout(hosted, tmp_path / "runner"), gh, tmp_path)
    assert run.outputs["check"] == {
        "available": "true",
        "version": "v2",
        "branch": BRANCH,
    }
    assert "template v2 is out; this project is on v1" in run.printed
    assert len(run.ran) == sum("run" in step for step in steps_of(load_workflow(hosted.project)))

    # The branch is on the remote: one commit on top of main, made by the workflow's bot.
    pushed = git(hosted.origin, "rev-parse", BRANCH).strip()
    assert git(hosted.origin, "rev-parse", f"{BRANCH}~1").strip() == main_head
    subject, author = git(hosted.origin, "log", "-1", "--format=%s%n%an", BRANCH).splitlines()
    assert subject == "Update the project template to v2"
    assert author == "github-actions[bot]"
    files = git(hosted.origin, "ls-tree", "-r", "--name-only", BRANCH).splitlines()
    assert {f"{RBAC}.new", f"{RBAC}.merge", migration} <= set(files)
    assert BODY_FILE not in files
    assert REPORT_FILE not in files
    # The user's edit is intact; the template's side waits in FILE.new.
    assert git(hosted.origin, "show", f"{BRANCH}:{RBAC}").split("\n", 1)[0] == ours
    assert git(hosted.origin, "show", f"{BRANCH}:{RBAC}.new").split("\n", 1)[0] == theirs
    assert "_commit: v2" in git(hosted.origin, "show", f"{BRANCH}:.copier-answers.yml")

    listed, created = gh.calls()
    assert listed["argv"][:2] == ["pr", "list"]
    assert listed["argv"][listed["argv"].index("--head") + 1] == BRANCH
    assert created["argv"][:2] == ["pr", "create"]
    options = created["argv"]
    assert options[options.index("--base") + 1] == "main"
    assert options[options.index("--head") + 1] == BRANCH
    assert options[options.index("--title") + 1] == "Update the project template to v2"
    assert listed["token"] == created["token"] == RUNNER_CONTEXT["secrets.GITHUB_TOKEN"]
    body = created["body"]
    assert "from v1 to v2" in body
    assert "FILE.merge holding both sides" in body
    assert f"mv {RBAC}.merge {RBAC} && rm {RBAC}.new" in body
    assert "| change | file | what happened |" in body
    assert f"| conflict (.new) | {RBAC} |" in body
    assert f"{RBAC}.new" in body
    # The hook's database notice: release v2 adds a model column and its migration.
    assert "## Database" in body
    assert migration in body

    # A week later the pull request is still open: nothing is proposed again.
    gh_later = Gh(tmp_path / "gh-later", open_pull_requests=[{"number": 1}])
    later = run_job(checkout(hosted, tmp_path / "runner-later"), gh_later, tmp_path)
    assert later.outputs["check"]["available"] == "true"
    assert later.outputs["existing"] == {"count": "1"}
    assert later.ran == [
        "Check for a newer template release",
        "Look for an open pull request that proposes it",
    ]
    assert [call["argv"][:2] for call in gh_later.calls()] == [["pr", "list"]]
    assert git(hosted.origin, "rev-parse", BRANCH).strip() == pushed
