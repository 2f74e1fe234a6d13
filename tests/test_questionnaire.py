"""Bad answers fail before anything is written; the post-copy step sets the project up."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from template_tools import TEMPLATE_DIR, ProjectEnv, copy_template, git, template_snapshot


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
        # Not a distribution name: pyproject.toml and uv.lock would refuse it.
        ("project_slug=billing_", "'billing_' is not a valid project slug"),
        ("project_slug=class", "'class' is a Python keyword"),
        ("project_slug=json", "'json' is the name of a Python standard-library module"),
        ("project_slug=app", "'app' is a package name the generated project uses itself"),
        ("author_email=nope", "'nope' is not a valid email address"),
        ("owner_email=owner@localhost", "'owner@localhost' is not a valid email address"),
        ("project_name=  ", "The project name cannot be empty"),
        # Written into Python and TOML strings as they are.
        ('project_name=Acme "Billing"', "The project name cannot hold a double quote"),
        ("description=Billing\\API", "The description cannot hold a double quote, a backslash"),
    ],
)
def test_a_bad_answer_fails_with_its_reason_and_writes_nothing(
    tmp_path: Path, answer: str, message: str
) -> None:
    destination = tmp_path / "myapp"
    result = copier_cli("-d", answer, str(template_snapshot()), str(destination))
    assert result.returncode != 0
    assert message in result.stderr
    # The sentence alone, without a traceback in front of it.
    assert "Traceback" not in result.stderr
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


def test_every_question_reads_well_at_80_columns() -> None:
    # Copier prints the help after a two-column microphone mark; a line that does not fit
    # is cut by the terminal.
    questions = {
        name: spec
        for name, spec in yaml.safe_load((TEMPLATE_DIR / "copier.yml").read_text()).items()
        if not name.startswith("_")
    }
    too_long = {
        name: line
        for name, spec in questions.items()
        for line in spec.get("help", "").splitlines()
        if len(line) > 77
    }
    assert too_long == {}


def load_extension() -> Any:
    """extensions/context.py, imported the way Copier's loader finds it: by its path."""
    spec = importlib.util.spec_from_file_location(
        "dayone_context", TEMPLATE_DIR / "extensions" / "context.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Addresses and whether the generated app takes them in development (special-use
# domains included); the questionnaire must give the same answer in the same words.
LONG_DOMAIN = f"@{'b' * 63}.{'c' * 63}.com"
EMAIL_TABLE = [
    *[
        (address, True)
        for address in [
            "ada@company.org",
            "ada.lovelace+billing@mail.company.co.uk",
            "o'brien@company.ie",
            "ADA@COMPANY.ORG",
            "nina@acme.test",
            "nina@acme.localhost",
            "nina@printer.local",
            "nina@example.com",
            "nina@acme.example",
            "nina@acme.invalid",
            "Nina@Acme.TEST",
            "tests@dayone.invalid",
            "jürgen@bücher.de",
            "ada@BÜCHER.de",
            "ada@xn--bcher-kva.de",
            "用户@例子.广告",
            "ada@company\u3002org",
            "a" * (254 - len(LONG_DOMAIN)) + LONG_DOMAIN,
        ]
    ],
    *[
        (address, False)
        for address in [
            "",
            "nope",
            "ada@",
            "@company.org",
            "ada@@company.org",
            "ada@company@org.com",
            "owner@localhost",
            "ada@test",
            "ada@company.123",
            "ada@company.org.",
            "ada.@company.org",
            ".ada@company.org",
            "ada..lovelace@company.org",
            "ada@-company.org",
            "ada@company..org",
            "ada@ab--c.org",
            "ada@comp_any.org",
            " ada@company.org",
            "ada@company.org ",
            "ada lovelace@company.org",
            "ada@company.org\r\nBcc: everyone@company.org",
            "ada\x00@company.org",
            '"ada lovelace"@company.org',
            '"ada"@company.org',
            "Ada Lovelace <ada@company.org>",
            "ada@[192.0.2.1]",
            "ada\uff20company.org",
            "ada\u200b@company.org",
            "\u0301ada@company.org",
            "ada@\u202ecompany.org",
            "ada@☃.net",
            "ada@⒈com",
            "ada@xn--zz.com",
            "a" * (255 - len(LONG_DOMAIN)) + LONG_DOMAIN,
            f"ada@{'b' * 64}.com",
            f"{'a' * 320}@company.org",
            f"ada@{'b.' * 200}com",
        ]
    ],
]


@pytest.mark.parametrize(("address", "accepted"), EMAIL_TABLE)
def test_the_questionnaire_takes_the_addresses_the_app_takes(address: str, accepted: bool) -> None:
    error = load_extension().email_error(address)
    if accepted:
        assert error == ""
    else:
        assert error.endswith(
            "is not a valid email address; expected something like jane@example.com."
        )
        assert "\n" not in error


@pytest.mark.slow
def test_the_questionnaire_and_the_app_apply_one_email_rule(
    render: Callable[..., Path], project_env: ProjectEnv, tmp_path: Path
) -> None:
    addresses = tmp_path / "addresses.json"
    addresses.write_text(json.dumps([address for address, _ in EMAIL_TABLE]))
    script = (
        "import json, sys\n"
        "from app.core.emails import email_problem\n"
        "addresses = json.loads(open(sys.argv[1]).read())\n"
        "print(json.dumps([email_problem(a, allow_special_use=True) or '' for a in addresses]))\n"
    )
    result = project_env.run(render(), "python", "-c", script, str(addresses))
    app_answers = json.loads(result.stdout)
    extension = load_extension()
    disagreements = [
        (address, answer, extension.email_error(address))
        for (address, _), answer in zip(EMAIL_TABLE, app_answers, strict=True)
        if answer != extension.email_error(address)
    ]
    assert disagreements == []
