"""The one email rule (app/core/emails.py) and everything that applies it: the API's
schemas, `python -m app.cli` and tools/day_one."""

from __future__ import annotations

import json
import sys
import unicodedata
from pathlib import Path

import pytest
import questionary
from httpx import AsyncClient
from pydantic import ValidationError

from app import cli
from app.core.config import Environment, Settings
from app.core.emails import email_problem, normalise_email
from app.schemas.auth import EmailIn, RegisterIn
from tests.support import PASSWORD, messages_to, running_app
from tests.test_cli import database, users  # noqa: F401 - `database` is a fixture
from tools import day_one
from tools.tests.test_day_one import Prompt, scratch  # noqa: F401 - `scratch` is a fixture

LONG_DOMAIN = f"@{'b' * 63}.{'c' * 63}.com"


def of_length(length: int) -> str:
    return "a" * (length - len(LONG_DOMAIN)) + LONG_DOMAIN


SPECIAL_USE = [
    "nina@acme.test",
    "nina@acme.localhost",
    "nina@printer.local",
    "nina@acme.invalid",
    "nina@hidden.onion",
    "Nina@Acme.TEST",
]
# RFC 6761 asks applications not to treat these specially; they pass everywhere.
EXAMPLE = ["nina@example.com", "nina@mail.example.org", "nina@acme.example"]
VALID = [
    "ada@company.org",
    "ada.lovelace+billing@mail.company.co.uk",
    "o'brien@company.ie",
    "ADA@COMPANY.ORG",
    "jürgen@bücher.de",
    "ada@xn--bcher-kva.de",
    "用户@例子.广告",
    f"{'a' * 64}@{'b' * 63}.com",
    of_length(254),  # the most there is
]
INVALID = [
    "",
    "ada",
    "ada@",
    "@company.org",
    "ada@@company.org",
    "ada@company@org.com",
    "ada@localhost",
    "ada@test",
    "ada@company",
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
    "ada@company.org\nBcc: everyone@company.org",
    "ada\x00@company.org",
    "ada\t@company.org",
    '"ada lovelace"@company.org',
    '"ada"@company.org',
    "Ada Lovelace <ada@company.org>",
    "ada@[192.0.2.1]",
    "ada\uff20company.org",  # a full-width at-sign
    "ada\u200b@company.org",
    "\u0301ada@company.org",
    "ada@\u202ecompany.org",
    "ada@☃.net",
    "ada@xn--zz.com",
    of_length(255),
    f"ada@{'b' * 64}.com",
    f"{'a' * 320}@company.org",
    f"ada@{'b.' * 200}com",
]


@pytest.mark.parametrize("address", VALID + EXAMPLE + SPECIAL_USE)
def test_development_accepts_valid_and_special_use_addresses(address: str) -> None:
    assert email_problem(address, allow_special_use=True) is None


@pytest.mark.parametrize("address", INVALID)
def test_invalid_addresses_are_refused_in_one_sentence(address: str) -> None:
    for allow_special_use in (True, False):
        problem = email_problem(address, allow_special_use=allow_special_use)
        assert problem is not None
        assert problem.endswith(
            "is not a valid email address; expected something like jane@example.com."
        )
        # The address is quoted escaped, so a line break in it cannot start a new line.
        assert "\n" not in problem
        assert "\r" not in problem
        assert len(problem) < 400


@pytest.mark.parametrize("address", SPECIAL_USE)
def test_production_refuses_special_use_domains_and_names_the_domain(address: str) -> None:
    problem = email_problem(address, allow_special_use=False)
    assert problem is not None
    domain = address.rpartition("@")[2].lower()
    assert f"is at {domain}, a special-use domain that cannot receive email" in problem
    assert "production refuses" in problem


@pytest.mark.parametrize("address", VALID + EXAMPLE)
def test_production_accepts_real_and_example_domains(address: str) -> None:
    assert email_problem(address, allow_special_use=False) is None


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Ada@Company.ORG", "ada@company.org"),
        ("ada@xn--bcher-kva.de", "ada@bücher.de"),
        ("ada@BÜCHER.de", "ada@bücher.de"),
        (unicodedata.normalize("NFD", "jürgen@company.de"), "jürgen@company.de"),
        ("Nina@Acme.LOCAL", "nina@acme.local"),
        ("Nina@Acme.Localhost", "nina@acme.localhost"),
    ],
)
def test_addresses_are_stored_in_one_form(given: str, stored: str) -> None:
    assert normalise_email(given, allow_special_use=True) == stored
    assert normalise_email(stored, allow_special_use=True) == stored


def test_the_schemas_apply_the_rule_and_normalise() -> None:
    assert EmailIn(email="Nina@Acme.TEST").email == "nina@acme.test"
    body = RegisterIn(email="jürgen@BÜCHER.de", password=PASSWORD)
    assert body.email == "jürgen@bücher.de"
    with pytest.raises(ValidationError, match="is not a valid email address"):
        EmailIn(email="ada@company.org\r\nBcc: everyone@company.org")
    with pytest.raises(ValidationError):
        EmailIn.model_validate({"email": 12345})


async def test_register_takes_a_special_use_address_outside_production(
    client: AsyncClient, settings: Settings
) -> None:
    response = await client.post(
        "/api/v1/auth/register", json={"email": "Nina@Acme.Test", "password": PASSWORD}
    )
    assert response.status_code == 202, response.text
    assert len(messages_to(settings, "nina@acme.test")) == 1


async def test_production_registration_refuses_a_special_use_address(settings: Settings) -> None:
    production = {
        "ENVIRONMENT": Environment.PRODUCTION,
        "FRONTEND_URL": "https://app.example.com",
    }
    async with running_app(settings, **production) as (_, client):
        refused = await client.post(
            "/api/v1/auth/register", json={"email": "nina@acme.test", "password": PASSWORD}
        )
        accepted = await client.post(
            "/api/v1/auth/register", json={"email": "nina@acme.com", "password": PASSWORD}
        )
    assert refused.status_code == 422
    assert "special-use domain" in refused.json()["error"]["message"]
    assert accepted.status_code == 202


@pytest.mark.parametrize(
    "email",
    [
        "ada@company.org\r\nBcc: everyone@company.org",
        "ada@company.org>, everyone@company.org",
        "Ada <ada@company.org>",
        "a" * 100_000 + "@company.org",
        "\ud800@company.org",
        ["ada@company.org"],
        None,
    ],
)
async def test_the_api_answers_a_bad_address_with_a_422(client: AsyncClient, email: object) -> None:
    for path, body in (
        ("/api/v1/auth/register", {"email": email, "password": PASSWORD}),
        ("/api/v1/auth/request-verify", {"email": email}),
        ("/api/v1/auth/request-reset", {"email": email}),
    ):
        # json.dumps writes a lone surrogate as an escape, the way a hostile client may.
        response = await client.post(
            path, content=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"]["code"] == "validation_error"


def test_create_owner_takes_a_special_use_address_in_development(
    database: str,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ENVIRONMENT", Environment.DEVELOPMENT.value)
    monkeypatch.setenv(cli.PASSWORD_VARIABLE, PASSWORD)
    assert cli.main(["create-owner", "--email", "Nina@Acme.test"]) == 0
    assert "Created the owner account nina@acme.test." in capsys.readouterr().out
    assert [user.email for user in users(database)] == ["nina@acme.test"]


@pytest.mark.parametrize(
    ("arguments", "source"),
    [(["--email", "nina@acme.test"], "--email"), ([], "OWNER_EMAIL")],
)
def test_create_owner_in_production_refuses_a_special_use_address_and_says_what_to_set(
    database: str,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    source: str,
) -> None:
    monkeypatch.setenv("ENVIRONMENT", Environment.PRODUCTION.value)
    monkeypatch.setenv("FRONTEND_URL", "https://app.company.org")
    monkeypatch.setenv("OWNER_EMAIL", "nina@acme.test")
    monkeypatch.setenv(cli.PASSWORD_VARIABLE, PASSWORD)
    for command in ("check-email", "create-owner"):
        assert cli.main([command, *arguments]) == 1
        error = capsys.readouterr().err
        assert "acme.test, a special-use domain that cannot receive email" in error
        assert f"It came from {source}: set OWNER_EMAIL in the settings (.env)" in error
    assert users(database) == []


def test_check_email_says_whether_create_owner_would_take_it(
    database: str,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OWNER_EMAIL", "Founder@Company.org")
    assert cli.main(["check-email"]) == 0
    assert capsys.readouterr().out == "founder@company.org can be the owner's email.\n"
    assert cli.main(["check-email", "--email", "founder@company"]) == 1
    assert "'founder@company' is not a valid email address" in capsys.readouterr().err
    assert users(database) == []


@pytest.mark.parametrize(
    ("environment", "owner_email", "refusal"),
    [
        ("development", "owner@company", "'owner@company' is not a valid email address"),
        ("production", "nina@acme.test", "acme.test, a special-use domain"),
    ],
)
def test_day_one_checks_the_owner_email_before_asking_for_a_password(
    scratch: Path,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    environment: str,
    owner_email: str,
    refusal: str,
) -> None:
    monkeypatch.delenv("OWNER_PASSWORD")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("ENVIRONMENT", environment)
    monkeypatch.setenv("OWNER_EMAIL", owner_email)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(questionary, "password", Prompt)
    Prompt.answers = [PASSWORD, PASSWORD]
    Prompt.asked = []
    assert day_one.main(["--target", "local", "--no-start"], root=scratch) == 1
    assert Prompt.asked == []
    error = capsys.readouterr().err
    assert "the owner account was not created" in error
    assert refusal in error
