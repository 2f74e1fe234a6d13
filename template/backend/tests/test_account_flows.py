"""Email verification, password reset and password change, and the auth event log."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select, update

from app.core.clock import as_utc, utcnow
from app.core.config import Settings
from app.core.security import digest
from app.models import OneTimeToken, RefreshToken, User
from app.services.account_service import link_base
from tests.support import PASSWORD, bearer, link_token, login, messages_to, register

NEW_PASSWORD = "a brand new passphrase"


async def verify(client: AsyncClient, token: str) -> int:
    response = await client.post("/api/v1/auth/verify", json={"token": token})
    return response.status_code


async def request_reset(client: AsyncClient, email: str = "ada@example.com") -> None:
    response = await client.post("/api/v1/auth/request-reset", json={"email": email})
    assert response.status_code == 202, response.text


async def reset(client: AsyncClient, token: str, password: str = NEW_PASSWORD) -> int:
    response = await client.post(
        "/api/v1/auth/reset", json={"token": token, "new_password": password}
    )
    return response.status_code


async def test_the_verification_link_verifies_once(client: AsyncClient, settings: Settings) -> None:
    await register(client)
    tokens = await login(client)  # unverified users can log in
    (message,) = messages_to(settings, "ada@example.com")
    token = link_token(message)
    assert await verify(client, token) == 204
    me = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.json()["is_verified"] is True
    assert await verify(client, token) == 400


async def test_one_time_tokens_are_random_and_stored_as_digests(
    client: AsyncClient, app: FastAPI, settings: Settings
) -> None:
    await register(client)
    token = link_token(messages_to(settings, "ada@example.com")[0])
    assert len(token) >= 43  # 32 random bytes in URL-safe base64: 256 bits
    refresh_token = (await login(client))["refresh_token"]
    async with app.state.sessionmaker() as session:
        stored = set(await session.scalars(select(OneTimeToken.token_hash)))
        stored |= set(await session.scalars(select(RefreshToken.token_hash)))
    assert digest(token) in stored
    assert digest(refresh_token) in stored
    assert not {token, refresh_token} & stored


async def test_a_verification_link_confirms_only_the_address_it_went_to(
    client: AsyncClient, app: FastAPI, settings: Settings
) -> None:
    await register(client)
    token = link_token(messages_to(settings, "ada@example.com")[0])
    async with app.state.sessionmaker() as session:
        await session.execute(update(User).values(email="changed@example.com"))
        await session.commit()
    assert await verify(client, token) == 400


async def test_tokens_are_bound_to_their_purpose(client: AsyncClient, settings: Settings) -> None:
    await register(client)
    verify_token = link_token(messages_to(settings, "ada@example.com")[0])
    await request_reset(client)
    reset_token = link_token(messages_to(settings, "ada@example.com")[1])
    assert await reset(client, verify_token) == 400
    assert await verify(client, reset_token) == 400
    # Neither attempt spent the tokens.
    assert await verify(client, verify_token) == 204
    assert await reset(client, reset_token) == 204


@pytest.mark.parametrize("endpoint", ["request-verify", "request-reset"])
async def test_email_requests_answer_alike_whether_or_not_the_account_exists(
    client: AsyncClient, settings: Settings, endpoint: str
) -> None:
    await register(client)
    answers = []
    for email in ["ada@example.com", "nobody@example.com"]:
        response = await client.post(f"/api/v1/auth/{endpoint}", json={"email": email})
        answers.append((response.status_code, response.json()))
    assert answers[0] == answers[1]
    assert answers[0][0] == 202
    assert messages_to(settings, "nobody@example.com") == []
    assert len(messages_to(settings, "ada@example.com")) == 2  # registration, then this


async def test_request_verify_sends_nothing_to_a_verified_account(
    client: AsyncClient, settings: Settings
) -> None:
    await register(client)
    assert await verify(client, link_token(messages_to(settings, "ada@example.com")[0])) == 204
    response = await client.post("/api/v1/auth/request-verify", json={"email": "ada@example.com"})
    assert response.status_code == 202
    assert len(messages_to(settings, "ada@example.com")) == 1


@pytest.mark.parametrize("email", ["ada@example.com", "nobody@example.com"])
async def test_email_requests_are_rate_limited(
    client: AsyncClient, settings: Settings, email: str
) -> None:
    await register(client)
    statuses = []
    for _ in range(4):  # EMAIL_REQUEST_LIMIT_PER_ACCOUNT is 3/hour
        response = await client.post("/api/v1/auth/request-reset", json={"email": email})
        statuses.append(response.status_code)
    assert statuses == [202, 202, 202, 429]
    assert int(response.headers["retry-after"]) > 0


async def test_links_are_built_from_the_configured_frontend_url(
    client: AsyncClient, settings: Settings
) -> None:
    await register(client)
    await client.post(
        "/api/v1/auth/request-reset",
        json={"email": "ada@example.com"},
        headers={"Host": "attacker.example", "X-Forwarded-Host": "attacker.example"},
    )
    message = messages_to(settings, "ada@example.com")[-1]
    assert f"{link_base(settings)}/reset-password#token=" in message.as_string()
    assert "attacker" not in message.as_string()


async def test_a_reset_ends_every_session_and_does_not_log_in(
    client: AsyncClient, settings: Settings
) -> None:
    await register(client)
    before = await login(client)
    await request_reset(client)
    token = link_token(messages_to(settings, "ada@example.com")[-1])
    response = await client.post(
        "/api/v1/auth/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 204
    assert response.content == b""  # no tokens: the user logs in with the new password
    me = await client.get("/api/v1/users/me", headers=bearer(before["access_token"]))
    assert me.status_code == 401
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": before["refresh_token"]}
    )
    assert refreshed.status_code == 401
    assert await reset(client, token, "yet another passphrase") == 400
    old = await client.post(
        "/api/v1/auth/login", data={"username": "ada@example.com", "password": PASSWORD}
    )
    assert old.status_code == 401
    after = await login(client, password=NEW_PASSWORD)
    me = await client.get("/api/v1/users/me", headers=bearer(after["access_token"]))
    assert me.status_code == 200
    assert messages_to(settings, "ada@example.com")[-1]["Subject"] == "Your password was changed"


async def test_a_weak_password_leaves_the_reset_link_usable(
    client: AsyncClient, settings: Settings
) -> None:
    await register(client)
    await request_reset(client)
    token = link_token(messages_to(settings, "ada@example.com")[-1])
    response = await client.post(
        "/api/v1/auth/reset", json={"token": token, "new_password": "password123"}
    )
    assert response.status_code == 422
    assert "common password" in response.json()["error"]["message"]
    assert await reset(client, token) == 204


async def test_reset_links_expire(client: AsyncClient, app: FastAPI, settings: Settings) -> None:
    await register(client)
    await request_reset(client)
    token = link_token(messages_to(settings, "ada@example.com")[-1])
    async with app.state.sessionmaker() as session:
        record = (
            await session.scalars(
                select(OneTimeToken).where(OneTimeToken.token_hash == digest(token))
            )
        ).one()
        lifetime = as_utc(record.expires_at) - as_utc(record.created_at)
        assert lifetime == timedelta(minutes=settings.RESET_TOKEN_MINUTES) <= timedelta(hours=1)
        record.expires_at = utcnow() - timedelta(seconds=1)
        await session.commit()
    assert await reset(client, token) == 400


async def change_password(
    client: AsyncClient, access_token: str, current: str, new: str = NEW_PASSWORD
) -> Any:
    return await client.post(
        "/api/v1/auth/change-password",
        json={"current_password": current, "new_password": new},
        headers=bearer(access_token),
    )


async def test_a_password_change_ends_other_sessions_and_keeps_this_one(
    client: AsyncClient, settings: Settings
) -> None:
    await register(client)
    other = await login(client)
    this = await login(client)
    wrong = await change_password(client, this["access_token"], "not my password")
    assert wrong.status_code == 400
    response = await change_password(client, this["access_token"], PASSWORD)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    fresh = response.json()
    for old in (other, this):
        me = await client.get("/api/v1/users/me", headers=bearer(old["access_token"]))
        assert me.status_code == 401
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": old["refresh_token"]}
        )
        assert refreshed.status_code == 401
    me = await client.get("/api/v1/users/me", headers=bearer(fresh["access_token"]))
    assert me.status_code == 200
    assert messages_to(settings, "ada@example.com")[-1]["Subject"] == "Your password was changed"


async def test_a_password_change_voids_pending_reset_links(
    client: AsyncClient, settings: Settings
) -> None:
    await register(client)
    tokens = await login(client)
    await request_reset(client)
    token = link_token(messages_to(settings, "ada@example.com")[-1])
    response = await change_password(client, tokens["access_token"], PASSWORD)
    assert response.status_code == 200
    assert await reset(client, token) == 400


@pytest.mark.parametrize(
    ("new", "reason"),
    [
        (PASSWORD, "differ from the current"),
        ("12345678", "repeats or steps"),
        ("sunshine", "common password"),
        ("short", "at least 8"),
    ],
)
async def test_a_password_change_explains_a_refused_password(
    client: AsyncClient, new: str, reason: str
) -> None:
    await register(client)
    tokens = await login(client)
    response = await change_password(client, tokens["access_token"], PASSWORD, new)
    assert response.status_code == 422
    assert reason in response.json()["error"]["message"]


async def test_wrong_current_passwords_are_throttled(client: AsyncClient) -> None:
    await register(client)
    tokens = await login(client)
    statuses = [
        (await change_password(client, tokens["access_token"], f"guess number {n}")).status_code
        for n in range(6)
    ]
    assert statuses == [400] * 5 + [429]


async def test_auth_events_are_logged_without_secrets(
    client: AsyncClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app")
    user = await register(client)
    secrets = [PASSWORD, link_token(messages_to(settings, "ada@example.com")[0])]
    await client.post(
        "/api/v1/auth/login", data={"username": "ada@example.com", "password": "wrong password!"}
    )
    first = await login(client)
    second = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    reuse = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert reuse.status_code == 401
    secrets += [
        "wrong password!",
        first["access_token"],
        first["refresh_token"],
        second.json()["refresh_token"],
    ]
    events = [record.getMessage() for record in caplog.records if record.name == "app.auth"]
    assert "Login failed (wrong password) from 127.0.0.1" in events
    assert any(event.startswith(f"Login succeeded for user {user['id']}") for event in events)
    assert any(event.startswith("Refresh token reuse") for event in events)
    # Outside production the console backend shows the links on purpose, one line each;
    # tests/test_dev_pages.py checks that production logs none.
    logged = "\n".join(
        record.getMessage() for record in caplog.records if ": open http" not in record.getMessage()
    )
    for secret in secrets:
        assert secret not in logged


async def test_no_route_takes_a_secret_in_its_url(app: FastAPI) -> None:
    for path, operations in app.openapi()["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                name = parameter["name"].lower()
                assert "token" not in name, (path, name)
                assert "password" not in name, (path, name)
