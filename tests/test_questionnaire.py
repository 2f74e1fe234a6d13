"""Bad answers fail before anything is written; the post-copy step sets the project up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import copy_template, git, template_snapshot


def copier_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "copier",
            "copy",
            "--defaults",
            "--trust",
            "--vcs-ref",
            "HEAD",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("project_slug=My App", "'My App' is not a valid project slug"),
        ("project_slug=class", "'class' is a Python keyword"),
        ("project_slug=json", "'json' is the name of a Python standard-library module"),
        ("project_slug=app", "'app' is a package name the generated project uses itself"),
        ("author_email=nope", "'nope' is not an email address"),
        ("owner_email=owner@localhost", "'owner@localhost' is not an email address"),
        ("project_name=  ", "The project name cannot be empty"),
    ],
)
def test_a_bad_answer_fails_with_its_reason_and_writes_nothing(
    tmp_path: Path, answer: str, message: str
) -> None:
    destination = tmp_path / "myapp"
    result = copier_cli("-d", answer, str(template_snapshot()), str(destination))
    assert result.returncode != 0
    assert message in result.stderr
    assert not destination.exists()


def test_a_bad_fly_region_is_refused(tmp_path: Path) -> None:
    destination = tmp_path / "myapp"
    result = copier_cli(
        "-d",
        "deploy_target=fly",
        "-d",
        "fly_region=Amsterdam",
        str(template_snapshot()),
        str(destination),
    )
    assert result.returncode != 0
    assert "'Amsterdam' is not a Fly.io region code" in result.stderr
    assert not destination.exists()


def test_the_slug_defaults_to_a_derived_identifier(tmp_path: Path) -> None:
    destination = tmp_path / "myapp"
    copy_template(destination, {"project_name": "2nd Acme Billing-API!"})
    answers = (destination / ".copier-answers.yml").read_text()
    assert "project_slug: app_2nd_acme_billing_api" in answers


def test_copy_commits_everything_but_the_secrets(tmp_path: Path) -> None:
    destination = tmp_path / "myapp"
    copy_template(destination, {"init_git": True})
    assert git(destination, "status", "--porcelain") == ""
    assert git(destination, "log", "--format=%s").splitlines() == [
        "Initial commit from the dayone template"
    ]
    tracked = git(destination, "ls-files").splitlines()
    assert ".copier-answers.yml" in tracked
    assert ".env" not in tracked
    assert (destination / ".env").is_file()


def test_an_existing_env_is_never_replaced(tmp_path: Path) -> None:
    destination = tmp_path / "myapp"
    destination.mkdir()
    (destination / ".env").write_text("SECRET_KEY=mine\n")
    copy_template(destination, {}, overwrite=True)
    assert (destination / ".env").read_text() == "SECRET_KEY=mine\n"


def test_bad_answers_given_as_defaults_fail_too(copie: Any) -> None:
    # pytest-copie passes answers as user defaults, the way a user's copier settings
    # file would: they go through the same validators.
    result = copie.copy(extra_answers={"project_slug": "class", "init_git": False})
    assert result.exit_code != 0
    assert "'class' is a Python keyword" in str(result.exception)
    good = copie.copy(extra_answers={"project_slug": "billing", "init_git": False})
    assert good.exit_code == 0, good.exception
    assert (good.project_dir / "backend" / "app" / "main.py").is_file()
