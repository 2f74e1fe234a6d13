from __future__ import annotations

import logging
import re

import pytest
from pydantic import ValidationError

from app.core.config import (
    PROJECT_DIR,
    Environment,
    Settings,
    StorageBackend,
    async_database_url,
)

STRONG_KEY = "q7V2mZ8xK4pL0sN9tR3wY6bC1dF5gH2jA8eU4iO7kM0"
PUBLIC_FRONTEND = "https://app.example.com"


def make_settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_production_accepts_a_strong_secret_key() -> None:
    settings = make_settings(
        ENVIRONMENT=Environment.PRODUCTION, SECRET_KEY=STRONG_KEY, FRONTEND_URL=PUBLIC_FRONTEND
    )
    assert settings.SECRET_KEY.get_secret_value() == STRONG_KEY


def test_development_replaces_a_missing_key_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="app.core.config"):
        first = make_settings(ENVIRONMENT=Environment.DEVELOPMENT)
        second = make_settings(ENVIRONMENT=Environment.DEVELOPMENT)
    first_key = first.SECRET_KEY.get_secret_value()
    assert len(first_key) >= 43
    assert first_key != second.SECRET_KEY.get_secret_value()
    assert "using a temporary key" in caplog.text


def test_secret_key_never_appears_in_the_settings_repr() -> None:
    settings = make_settings(
        ENVIRONMENT=Environment.PRODUCTION, SECRET_KEY=STRONG_KEY, FRONTEND_URL=PUBLIC_FRONTEND
    )
    assert STRONG_KEY not in repr(settings)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db.internal:5432/app", "postgresql+asyncpg://u:p@db.internal:5432/app"),
        ("postgresql://u:p@db:5432/app", "postgresql+asyncpg://u:p@db:5432/app"),
        (
            "postgres://u:p@db:5432/app?sslmode=disable",
            "postgresql+asyncpg://u:p@db:5432/app?ssl=disable",
        ),
        ("postgresql+asyncpg://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("sqlite:///./data/app.db", "sqlite+aiosqlite:///./data/app.db"),
        ("sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite:///:memory:"),
    ],
)
def test_database_urls_from_platforms_are_accepted_as_they_are(given: str, expected: str) -> None:
    assert async_database_url(given) == expected
    assert expected == make_settings(DATABASE_URL=given).DATABASE_URL


def test_cors_origins_read_as_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKEND_CORS_ORIGINS", "https://app.example.com, http://localhost:5173")
    assert make_settings().BACKEND_CORS_ORIGINS == [
        "https://app.example.com",
        "http://localhost:5173",
    ]


def test_an_empty_redis_url_means_no_redis() -> None:
    assert make_settings(REDIS_URL="").REDIS_URL is None


@pytest.mark.parametrize("limit", ["5 per quarter", "five/minute", ""])
def test_a_malformed_rate_limit_is_refused_with_an_example(limit: str) -> None:
    with pytest.raises(ValidationError, match="write it as count/period"):
        make_settings(LOGIN_LIMIT_PER_ACCOUNT=limit)


def test_every_setting_is_documented() -> None:
    template = (PROJECT_DIR / ".env.template").read_text()
    in_template = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", template, flags=re.MULTILINE))
    missing = set(Settings.model_fields) - in_template
    assert not missing, f"add these to .env.template, with a comment: {sorted(missing)}"
    readme = (PROJECT_DIR / "README.md").read_text()
    in_readme = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", readme))
    missing = set(Settings.model_fields) - in_readme
    assert not missing, f"add these to the settings table in README.md: {sorted(missing)}"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"SMTP_USER": "mailer"}, "SMTP_USER is set but SMTP_PASSWORD is not"),
        ({"STORAGE_BACKEND": "s3"}, "STORAGE_BACKEND is s3 but S3_BUCKET is not set"),
        ({"JOB_RETRY_INTERVALS": "10,-5"}, "cannot be negative"),
    ],
)
def test_service_settings_that_cannot_work_are_refused(
    values: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        make_settings(**values)


def test_service_defaults_follow_what_is_configured() -> None:
    assert make_settings().storage_backend is StorageBackend.LOCAL
    assert make_settings(S3_BUCKET="uploads").storage_backend is StorageBackend.S3
    assert make_settings(SMTP_SECURITY="ssl").smtp_port == 465
    assert make_settings(SMTP_SECURITY="none", SMTP_PORT=2525).smtp_port == 2525
    assert make_settings(ALLOWED_UPLOAD_TYPES="image/png, text/plain").ALLOWED_UPLOAD_TYPES == [
        "image/png",
        "text/plain",
    ]


def test_empty_service_settings_mean_unset() -> None:
    settings = make_settings(
        SMTP_HOST="", SMTP_USER="", SMTP_PASSWORD="", S3_BUCKET="", S3_SECRET_ACCESS_KEY=""
    )
    assert settings.SMTP_HOST is None
    assert settings.SMTP_PASSWORD is None
    assert settings.S3_SECRET_ACCESS_KEY is None
    assert settings.storage_backend is StorageBackend.LOCAL


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:3000",
        "https://localhost:3000",
        "https://app.localhost",
        "https://127.0.0.1",
        "https://127.1.2.3:8443",
        "https://[::1]:3000",
        "https://0.0.0.0",
        "http://app.example.com",
        "app.example.com",
    ],
)
def test_production_refuses_a_frontend_url_on_this_machine_or_without_https(url: str) -> None:
    with pytest.raises(ValidationError) as error:
        make_settings(ENVIRONMENT=Environment.PRODUCTION, SECRET_KEY=STRONG_KEY, FRONTEND_URL=url)
    message = str(error.value)
    assert f"FRONTEND_URL is {url!r}" in message
    assert "refusing to start" in message
    assert "Set FRONTEND_URL to your web app's public address" in message


@pytest.mark.parametrize("given", [{}, {"FRONTEND_URL": ""}])
def test_production_refuses_an_unset_frontend_url(given: dict[str, str]) -> None:
    # Unset means the API's own development pages, which production does not serve.
    with pytest.raises(ValidationError, match="FRONTEND_URL is not set; in production"):
        make_settings(ENVIRONMENT=Environment.PRODUCTION, SECRET_KEY=STRONG_KEY, **given)


@pytest.mark.parametrize("url", ["https://app.example.com", "https://10.0.0.5:8443/app"])
def test_production_accepts_an_https_frontend_url(url: str) -> None:
    settings = make_settings(
        ENVIRONMENT=Environment.PRODUCTION, SECRET_KEY=STRONG_KEY, FRONTEND_URL=url
    )
    assert url == settings.FRONTEND_URL


def test_a_local_frontend_url_is_fine_outside_production() -> None:
    settings = make_settings(
        ENVIRONMENT=Environment.DEVELOPMENT, FRONTEND_URL="http://localhost:5173"
    )
    assert settings.FRONTEND_URL == "http://localhost:5173"
