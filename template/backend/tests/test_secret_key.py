"""The SECRET_KEY check: every key the usual generators print passes, weak ones do not."""

from __future__ import annotations

import base64
import logging
import secrets
import string
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.core.config import Environment, Settings
from app.core.secret_key import new_secret_key, secret_key_problem
from tools.deployers.base import Project
from tools.deployers.fly import FlyDeployer
from tools.envfile import parse_env, render_env

DRAWS = 4000

# What people run to make a key, as the bytes those commands print.
GENERATORS: dict[str, Callable[[], str]] = {
    "openssl rand -hex 32": lambda: secrets.token_bytes(32).hex(),
    "openssl rand -base64 32": lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
    "secrets.token_hex(32)": lambda: secrets.token_hex(32),
    "secrets.token_urlsafe(32)": lambda: secrets.token_urlsafe(32),
    "secrets.token_bytes(32), base64": lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
    "secrets.token_bytes(32), URL-safe base64": lambda: base64.urlsafe_b64encode(
        secrets.token_bytes(32)
    ).decode(),
    "upper-case hex": lambda: secrets.token_hex(32).upper(),
    "the app's own new_secret_key()": new_secret_key,
}


@pytest.mark.parametrize("generator", sorted(GENERATORS))
def test_every_key_a_usual_generator_prints_is_accepted(generator: str) -> None:
    draw = GENERATORS[generator]
    refused = {
        key: problem
        for key in (draw() for _ in range(DRAWS))
        if (problem := secret_key_problem(key))
    }
    assert refused == {}


def test_the_keys_the_project_writes_are_accepted(tmp_path: Path) -> None:
    # .env from the post-copy step and day_one, and the production key day_one gives Fly.
    template = "# comment\nSECRET_KEY=\nOTHER=value\n"
    project = Project(tmp_path, "My App", "my_app", {})
    for _ in range(DRAWS // 4):
        assert secret_key_problem(parse_env(render_env(template))["SECRET_KEY"]) is None
        assert secret_key_problem(FlyDeployer(project).secret_key) is None


WEAK_KEYS = [
    ("", "not set"),
    ("changethis", "well-known sample value"),
    ("please-change-me-before-going-live-0123456789abcdef", "well-known sample value"),
    ("secret", "well-known sample value"),
    ("09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7", "well-known sample"),
    ("short-but-random-Zx81", "21 characters of base64, which hold at most 126 bits"),
    ("3f0c3d04e571044cead47485d485c0a1", "32 characters of hex, which hold at most 128 bits"),
    (secrets.token_hex(31), "62 characters of hex"),
    (secrets.token_urlsafe(31), "42 characters of base64"),
    ("".join(secrets.choice(string.digits) for _ in range(70)), "70 characters of decimal digits"),
    ("a" * 64, "follows a pattern"),
    ("abc" * 22, "follows a pattern"),
    ("0123456789abcdef" * 4, "follows a pattern"),
    ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", "follows a pattern"),
    ("Zz" * 40, "follows a pattern"),
    ("x" * 40 + secrets.token_hex(20), "follows a pattern"),
    (secrets.token_hex(16) * 2, "follows a pattern"),
]
# Ids without the random keys, alike in every process of pytest-xdist.
WEAK_KEY_IDS = [f"{reason} ({len(key)} characters)" for key, reason in WEAK_KEYS]


@pytest.mark.parametrize(("key", "reason"), WEAK_KEYS, ids=WEAK_KEY_IDS)
def test_weak_keys_are_refused_with_the_reason(key: str, reason: str) -> None:
    problem = secret_key_problem(key)
    assert problem is not None
    assert reason in problem


@pytest.mark.parametrize(("key", "reason"), WEAK_KEYS, ids=WEAK_KEY_IDS)
def test_production_refuses_to_start_with_a_weak_key(key: str, reason: str) -> None:
    with pytest.raises(ValidationError) as error:
        Settings(_env_file=None, ENVIRONMENT=Environment.PRODUCTION, SECRET_KEY=key)
    message = str(error.value)
    assert reason in message
    assert "refusing to start in production" in message
    assert "secrets.token_urlsafe(32)" in message


def test_development_says_as_loudly_that_it_replaces_a_weak_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    weak = secrets.token_hex(16)
    with caplog.at_level(logging.ERROR, logger="app.core.config"):
        settings = Settings(_env_file=None, ENVIRONMENT=Environment.DEVELOPMENT, SECRET_KEY=weak)
    replaced = settings.SECRET_KEY.get_secret_value()
    assert replaced != weak
    assert secret_key_problem(replaced) is None
    [record] = [r for r in caplog.records if r.name == "app.core.config"]
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert "32 characters of hex" in message
    assert "using a temporary key" in message
    assert "stop working when it restarts" in message
    assert 'python -c "import secrets; print(secrets.token_urlsafe(32))"' in message
