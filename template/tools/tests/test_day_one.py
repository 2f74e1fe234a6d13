"""tools/day_one.py: set-up steps, the targets' actions, re-runs and failures.

Each test runs the command on a scratch copy of the project root (its backend/ is the real
one, linked) with a fresh database, so that the project's own .env, state file and
manifests are never touched.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest
import questionary

from app.core.config import Settings
from tests.servers import free_port, settings_env
from tests.support import PASSWORD
from tools import day_one, project
from tools.deployers.base import Outcome
from tools.deployers.fly import fly_manifest
from tools.deployers.local import stop
from tools.tests.deploy_fakes import (
    CLOUDFLARED_RULES,
    FLYCTL_RULES,
    REDIS_URL,
    TUNNEL_URL,
    FakeBin,
    with_failure,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def scratch(
    tmp_path: Path,
    settings: Settings,
    make_database: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """A project root of its own, with a fresh, never-migrated database."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "backend").symlink_to(PROJECT_ROOT / "backend")
    shutil.copy(PROJECT_ROOT / ".env.template", root / ".env.template")
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", make_database())
    # Whatever the developer's own .env says, these runs use no outside service.
    for name in ("REDIS_URL", "S3_BUCKET", "SMTP_HOST", "DEPLOY_TARGET", "DAY_ONE_EXECUTE"):
        monkeypatch.setenv(name, "")
    # Where a production deployment's email links go; fly refuses to deploy without it.
    monkeypatch.setenv("FRONTEND_URL", "https://app.example.com")
    monkeypatch.setenv("OWNER_EMAIL", "owner@example.com")
    monkeypatch.setenv("OWNER_PASSWORD", PASSWORD)
    return root


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBin:
    fakes = FakeBin(tmp_path / "bin")
    monkeypatch.setenv("PATH", fakes.path(only=True))
    return fakes


def run(root: Path, *args: str) -> int:
    return day_one.main([*args, "--non-interactive"], root=root)


def test_fly_end_to_end_with_a_fake_flyctl(
    scratch: Path, fake_bin: FakeBin, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_bin.add("flyctl", FLYCTL_RULES)
    assert run(scratch, "--target", "fly", "--execute", "--app", "my-app", "--region", "ams") == 0
    out = capsys.readouterr().out

    assert "target fly (from --target)" in out
    env_file = (scratch / ".env").read_text()
    assert "SECRET_KEY=" in env_file
    assert "SECRET_KEY=\n" not in env_file
    assert "Migrated the database from an empty schema" in out
    assert "Created the owner account owner@example.com." in out
    expected = fly_manifest(project.PROJECT_NAME, "my-app", "ams")
    assert (scratch / "fly.toml").read_text() == expected
    # The plan is printed with every command before anything runs.
    assert out.index("$ flyctl launch") < out.index("running: flyctl launch")
    for command in ("postgres create", "postgres attach", "redis create", "secrets set", "deploy"):
        assert f"$ flyctl {command}" in out
    assert [call[1] for call in fake_bin.calls()] == [
        "auth",
        "launch",
        "postgres",
        "postgres",
        "redis",
        "secrets",
        "deploy",
    ]
    assert REDIS_URL not in out, "secrets must not be printed"
    assert "app: https://my-app.fly.dev" in out

    state = json.loads((scratch / ".deploy-state.json").read_text())
    assert state["target"] == "fly"
    assert state["targets"]["fly"]["app"] == "my-app"
    assert state["targets"]["fly"]["region"] == "ams"
    assert "fly.toml" in state["manifests"]

    assert day_one.main(["status"], root=scratch) == 0
    status = capsys.readouterr().out
    assert "target fly" in status
    assert "steps done: launch, postgres, attach, redis, secrets, deploy" in status
    assert "manifest fly.toml: as written by day_one" in status


def test_a_manifest_for_another_target_comes_with_what_to_commit(
    scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # In a git repository, as a generated project is: an untracked render.yaml would make
    # the next `copier update` refuse to run.
    git = shutil.which("git")
    assert git is not None
    identity = ["-c", "user.name=dayone tests", "-c", "user.email=tests@example.com"]
    for command in (["init", "--quiet"], ["add", "--all"], [*identity, "commit", "-qm", "init"]):
        subprocess.run([git, *command], cwd=scratch, check=True)  # noqa: S603 - fixed arguments
    assert project.DEPLOY_TARGET != "render"
    assert run(scratch, "--target", "render") == 0
    out = capsys.readouterr().out
    assert "git add render.yaml && git commit -m 'Add render.yaml'" in out
    assert "-d deploy_target=render" in out

    subprocess.run([git, "add", "render.yaml"], cwd=scratch, check=True)  # noqa: S603
    assert run(scratch, "--target", "render") == 0
    assert "git add render.yaml" not in capsys.readouterr().out


def test_a_second_run_changes_nothing_and_an_edited_manifest_is_kept(
    scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(scratch, "--target", "render") == 0
    first = capsys.readouterr().out
    env_before = (scratch / ".env").read_text()
    assert "wrote render.yaml" in first

    assert run(scratch, "--target", "render") == 0
    second = capsys.readouterr().out
    assert "Nothing needed changing" in second
    assert ".env exists; left as it is." in second
    assert "The database is at the newest revision" in second
    assert "An owner exists already (owner@example.com); nothing to do." in second
    assert "render.yaml is up to date" in second
    assert (scratch / ".env").read_text() == env_before

    edited = (scratch / "render.yaml").read_text().replace("plan: starter", "plan: standard")
    (scratch / "render.yaml").write_text(edited)
    assert run(scratch, "--target", "render", "--region", "frankfurt") == 0
    third = capsys.readouterr().out
    assert "render.yaml has edits of yours" in third
    assert (scratch / "render.yaml").read_text() == edited
    assert "region: frankfurt" in (scratch / "render.yaml.new").read_text()

    assert day_one.main(["status"], root=scratch) == 0
    assert "edited since day_one wrote it" in capsys.readouterr().out


def test_missing_flyctl_prints_the_plan_and_says_how_to_install_it(
    scratch: Path, fake_bin: FakeBin, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(scratch, "--target", "fly", "--execute") == 1
    out = capsys.readouterr().out
    assert "MISSING: flyctl on PATH" in out
    assert "https://fly.io/install.sh" in out
    assert "flyctl launch --no-deploy" in out
    assert fake_bin.calls() == []
    assert (scratch / "fly.toml").exists()


def test_a_failing_step_stops_the_run_with_its_output(
    scratch: Path, fake_bin: FakeBin, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_bin.add(
        "flyctl", with_failure(FLYCTL_RULES, "redis create", "Error: payment method required\n")
    )
    assert run(scratch, "--target", "fly", "--execute") == 1
    captured = capsys.readouterr()
    assert "FAILED: `flyctl redis create" in captured.out
    assert "payment method required" in captured.err
    assert [call[1] for call in fake_bin.calls()][-1] == "redis"


def test_without_an_owner_password_it_stops_before_the_target_action(
    scratch: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OWNER_PASSWORD")
    assert run(scratch, "--target", "render") == 1
    captured = capsys.readouterr()
    assert "set OWNER_PASSWORD" in captured.err
    assert not (scratch / "render.yaml").exists()


def test_a_bad_deploy_target_variable_is_named(
    scratch: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEPLOY_TARGET", "heroku")
    assert run(scratch) == 1
    error = capsys.readouterr().err
    assert "DEPLOY_TARGET='heroku' is not a target" in error
    assert not (scratch / ".env").exists(), "nothing is written before the target is known"


def test_tunnel_fallback_when_a_cloud_target_cannot_run(
    scratch: Path,
    fake_bin: FakeBin,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No flyctl: the app is shared from this machine through the tunnel instead."""
    fake_bin.add("cloudflared", CLOUDFLARED_RULES)
    served: list[int] = []

    def check_then_stop(outcome: Outcome) -> int:
        # The API answers while the command would keep it in the foreground.
        health = outcome.urls["API"] + "/health"
        with urllib.request.urlopen(health, timeout=5) as response:  # noqa: S310 - http on loopback
            served.append(response.status)
        stop(outcome.processes)
        return 0

    monkeypatch.setattr(day_one, "wait_in_foreground", check_then_stop)
    port = free_port()
    code = run(scratch, "--target", "fly", "--execute", "--fallback-tunnel", "--port", str(port))
    out = capsys.readouterr().out
    assert code == 0
    assert served == [200]
    assert "MISSING: flyctl on PATH" in out
    assert f"public URL: {TUNNEL_URL}" in out
    assert f"API: http://127.0.0.1:{port}" in out
    assert [call[0] for call in fake_bin.calls()] == ["cloudflared"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "fly", "--region", "Amsterdam"], "is not a Fly.io region code"),
        (["--target", "fly", "--app", "My_App"], "is not a valid Fly app name"),
        (["--target", "render", "--region", "mars"], "is not a Render region"),
    ],
)
def test_bad_names_are_refused_before_anything_is_written(
    scratch: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert run(scratch, *args) == 1
    assert message in capsys.readouterr().err
    assert sorted(path.name for path in scratch.iterdir()) == [".env.template", "backend"]


class Prompt:
    """questionary's prompt objects, answering from a script."""

    answers: ClassVar[list[object]] = []
    asked: ClassVar[list[str]] = []

    def __init__(self, message: str, **_options: object) -> None:
        self.message = message

    def unsafe_ask(self) -> object:
        Prompt.asked.append(self.message)
        return Prompt.answers.pop(0)


def test_an_interactive_run_asks_what_flags_would_have_said(
    scratch: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OWNER_PASSWORD")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(questionary, "password", Prompt)
    monkeypatch.setattr(questionary, "confirm", Prompt)
    # A mistyped repeat, then the password twice; then no to the tunnel fallback (the
    # scratch project has no git remote for Render to deploy from).
    Prompt.answers = [PASSWORD, "typo", PASSWORD, PASSWORD, False]
    Prompt.asked = []

    assert day_one.main(["--target", "render"], root=scratch) == 0
    out = capsys.readouterr().out
    assert Prompt.asked == [
        "Password for the owner owner@example.com:",
        "The same password again:",
        "Password for the owner owner@example.com:",
        "The same password again:",
        "Share the app from this machine through a tunnel meanwhile?",
    ]
    assert "The two differ; once more." in out
    assert "Created the owner account owner@example.com." in out
    assert "MISSING: a git remote named origin" in out
