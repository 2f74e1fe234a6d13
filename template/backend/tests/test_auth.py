"""Registration, login, access tokens and refresh rotation."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import jwt
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr
from sqlalchemy import select

from app.core import security
from app.core.clock import utcnow
from app.core.config import Settings
from app.core.security import LEEWAY_SECONDS, InvalidTokenError, decode_access_token
from app.main import create_app
from app.models import User
from app.services.account_service import link_base
from tests.support import (
    PASSWORD,
    access_token,
    add_user,
    bearer,
    login,
    messages_to,
    register,
)


async def test_register_login_and_read_me(client: AsyncClient) -> None:
    user = await register(client, "Ada@Example.com")
    assert user["email"] == "ada@example.com"
    assert user["role"] == "member"
    assert user["is_verified"] is False
    tokens = await login(client)
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 15 * 60
    me = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == user["id"]


async def test_registration_sends_a_verification_link(
    client: AsyncClient, settings: Settings
) -> None:
    await register(client)
    (message,) = messages_to(settings, "ada@example.com")
    assert message["Subject"] == "Confirm your email address"
    assert f"{link_base(settings)}/verify-email#token=" in message.as_string()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "x@example.com", "password": PASSWORD, "role": "owner"}, "body.role"),
        ({"email": "not-an-email", "password": PASSWORD}, "body.email"),
        ({"email": "x@example.com", "password": "p" * 129}, "body.password"),
    ],
)
async def test_register_rejects_bad_bodies(
    client: AsyncClient, body: dict[str, str], field: str
) -> None:
    response = await client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 422
    assert field in [detail["field"] for detail in response.json()["error"]["details"]]


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "at least 8 characters"),
        ("password123", "common password"),
        ("ada@example.com", "must not be your email"),
    ],
)
async def test_register_explains_a_weak_password(
    client: AsyncClient, password: str, reason: str
) -> None:
    response = await client.post(
        "/api/v1/auth/register", json={"email": "ada@example.com", "password": password}
    )
    assert response.status_code == 422
    assert reason in response.json()["error"]["message"]


async def test_control_characters_are_refused_or_answered_like_any_wrong_login(
    client: AsyncClient,
) -> None:
    # PostgreSQL cannot store NUL in text: such input must never reach a query.
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": "ada@example.com", "password": PASSWORD, "full_name": "Ada\x00"},
    )
    assert response.status_code == 422
    user = await register(client)
    tokens = await login(client)
    update = await client.patch(
        "/api/v1/users/me",
        json={"full_name": "Ada\nLovelace"},
        headers=bearer(tokens["access_token"]),
    )
    assert update.status_code == 422
    assert user["full_name"] is None
    for username in ["ada@example.com\x00", "x" * 400 + "@example.com"]:
        response = await client.post(
            "/api/v1/auth/login", data={"username": username, "password": PASSWORD}
        )
        assert response.status_code == 401
        assert response.json()["error"]["message"] == "Incorrect email or password."


async def test_passwords_are_not_truncated(client: AsyncClient) -> None:
    long_password = "a-long passphrase " * 7  # 126 characters, past bcrypt's 72 bytes
    await client.post(
        "/api/v1/auth/register", json={"email": "ada@example.com", "password": long_password}
    )
    response = await client.post(
        "/api/v1/auth/login", data={"username": "ada@example.com", "password": long_password[:72]}
    )
    assert response.status_code == 401


async def test_registering_a_taken_address_looks_the_same_and_tells_its_owner(
    client: AsyncClient, settings: Settings
) -> None:
    fresh = await client.post(
        "/api/v1/auth/register", json={"email": "new@example.com", "password": PASSWORD}
    )
    await register(client)
    taken = await client.post(
        "/api/v1/auth/register", json={"email": "ADA@example.com", "password": PASSWORD}
    )
    assert (taken.status_code, taken.json()) == (fresh.status_code, fresh.json())
    assert taken.status_code == 202
    subjects = [message["Subject"] for message in messages_to(settings, "ada@example.com")]
    assert subjects == ["Confirm your email address", "Someone tried to sign up with your address"]
    # The account keeps its password: the second registration changed nothing.
    assert (await login(client, "ada@example.com"))["access_token"]


async def deactivate(app: FastAPI, email: str) -> None:
    async with app.state.sessionmaker() as session:
        user = (await session.scalars(select(User).where(User.email == email))).one()
        user.is_active = False
        await session.commit()


async def test_login_failures_look_alike(client: AsyncClient, app: FastAPI) -> None:
    await register(client)
    await register(client, "gone@example.com")
    await deactivate(app, "gone@example.com")
    answers = []
    for email, password in [
        ("nobody@example.com", PASSWORD),
        ("ada@example.com", "wrong password!"),
        ("gone@example.com", PASSWORD),
    ]:
        response = await client.post(
            "/api/v1/auth/login", data={"username": email, "password": password}
        )
        answers.append((response.status_code, response.json()))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 401


async def test_login_is_throttled_per_account(client: AsyncClient) -> None:
    await register(client)
    statuses = []
    for _ in range(6):
        response = await client.post(
            "/api/v1/auth/login",
            data={"username": "ada@example.com", "password": "wrong password!"},
            headers={"X-Forwarded-For": str(uuid.uuid4())},
        )
        statuses.append(response.status_code)
    assert statuses == [401] * 5 + [429]
    assert int(response.headers["retry-after"]) > 0
    # The right password does not get through a locked account either.
    response = await client.post(
        "/api/v1/auth/login", data={"username": "ada@example.com", "password": PASSWORD}
    )
    assert response.status_code == 429


async def test_refresh_rotates_and_reuse_revokes_the_family(client: AsyncClient) -> None:
    await register(client)
    first = await login(client)
    second = (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()
    assert second["refresh_token"] != first["refresh_token"]
    # The rotated-out token comes back: a thief has it, so the whole login ends.
    reuse = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert reuse.status_code == 401
    after = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert after.status_code == 401
    # Other logins are untouched.
    other = await login(client)
    ok = await client.post("/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert ok.status_code == 200


async def test_concurrent_refreshes_with_one_token_let_at_most_one_through(
    client: AsyncClient,
) -> None:
    await register(client)
    tokens = await login(client)
    responses = await asyncio.gather(
        *[
            client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            for _ in range(4)
        ]
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(200) <= 1
    assert all(status in (200, 401) for status in statuses)


async def test_logout_revokes_the_family(client: AsyncClient) -> None:
    await register(client)
    tokens = await login(client)
    response = await client.post(
        "/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}
    )
    assert response.status_code == 204
    again = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert again.status_code == 401


async def test_a_deactivated_users_token_is_refused(client: AsyncClient, app: FastAPI) -> None:
    user = await register(client)
    tokens = await login(client)
    await deactivate(app, user["email"])
    response = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert response.status_code == 401


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forge(settings: Settings, who: dict[str, str], **changes: Any) -> str:
    """A token signed with the app's key for `who` (its sub and sid), with `changes`."""
    now = utcnow()
    claims: dict[str, Any] = {
        **who,
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    }
    headers: dict[str, Any] = {"typ": "at+jwt"}
    key = settings.SECRET_KEY.get_secret_value()
    algorithm = changes.pop("algorithm", "HS256")
    headers.update(changes.pop("headers", {}))
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


# Each row: a name and how to make the token from (settings, the genuine sub and sid).
# Add rows to extend.
JWT_ATTACKS: list[tuple[str, Callable[[Settings, dict[str, str]], str]]] = [
    ("alg none", lambda s, u: b64({"alg": "none", "typ": "at+jwt"}) + "." + b64(u) + "."),
    ("HS384 instead of HS256", lambda s, u: forge(s, u, algorithm="HS384")),
    ("empty signature", lambda s, u: forge(s, u).rsplit(".", 1)[0] + "."),
    (
        "wrong key",
        lambda s, u: jwt.encode(
            u, "another-key-" * 4, algorithm="HS256", headers={"typ": "at+jwt"}
        ),
    ),
    ("kid header", lambda s, u: forge(s, u, headers={"kid": "../../dev/null"})),
    ("jku header", lambda s, u: forge(s, u, headers={"jku": "https://attacker.invalid/keys"})),
    ("jwk header", lambda s, u: forge(s, u, headers={"jwk": {"kty": "oct", "k": "AAAA"}})),
    ("typ JWT, another kind of token", lambda s, u: forge(s, u, headers={"typ": "JWT"})),
    ("expired", lambda s, u: forge(s, u, exp=int((utcnow() - timedelta(minutes=5)).timestamp()))),
    ("no exp", lambda s, u: forge(s, u, exp=None)),
    ("no iat", lambda s, u: forge(s, u, iat=None)),
    ("no aud", lambda s, u: forge(s, u, aud=None)),
    ("wrong aud", lambda s, u: forge(s, u, aud="another-api")),
    ("no iss", lambda s, u: forge(s, u, iss=None)),
    ("wrong iss", lambda s, u: forge(s, u, iss="someone-else")),
    ("sub not a uuid", lambda s, u: forge(s, u, sub="admin")),
    ("sub of nobody", lambda s, u: forge(s, u, sub=str(uuid.uuid4()))),
    ("no sid", lambda s, u: forge(s, u, sid=None)),
    ("sid of no login", lambda s, u: forge(s, u, sid=str(uuid.uuid4()))),
    ("sid not a uuid", lambda s, u: forge(s, u, sid=12)),
    ("exp as a string", lambda s, u: forge(s, u, exp=str(int(utcnow().timestamp()) + 300))),
    ("iat as a string", lambda s, u: forge(s, u, iat=str(int(utcnow().timestamp())))),
    ("exp true", lambda s, u: forge(s, u, exp=True)),
    ("garbage", lambda s, u: "not.a.token"),
]


@pytest.mark.parametrize(("name", "make"), JWT_ATTACKS, ids=[name for name, _ in JWT_ATTACKS])
async def test_forged_access_tokens_get_401(
    client: AsyncClient,
    settings: Settings,
    name: str,
    make: Callable[[Settings, dict[str, str]], str],
) -> None:
    await register(client)
    claims = jwt.decode((await login(client))["access_token"], options={"verify_signature": False})
    who = {"sub": claims["sub"], "sid": claims["sid"]}
    genuine = forge(settings, who)
    assert (await client.get("/api/v1/users/me", headers=bearer(genuine))).status_code == 200
    response = await client.get("/api/v1/users/me", headers=bearer(make(settings, who)))
    assert response.status_code == 401, name
    assert response.json()["error"]["code"] == "unauthorized"


async def test_access_tokens_carry_the_required_claims(
    client: AsyncClient, settings: Settings
) -> None:
    await register(client)
    token = (await login(client))["access_token"]
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "at+jwt"}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert {"sub", "sid", "iss", "aud", "iat", "exp"} <= set(claims)
    assert claims["exp"] - claims["iat"] <= 15 * 60 + 1


async def test_a_client_cannot_dodge_the_address_limit_with_x_forwarded_for(
    settings: Settings,
) -> None:
    # The app takes the address from the connection; uvicorn rewrites it from
    # X-Forwarded-For only for the proxies in FORWARDED_ALLOW_IPS.
    strict = settings.model_copy(update={"LOGIN_LIMIT_PER_ADDRESS": "3/minute"})
    application = create_app(strict)
    async with application.router.lifespan_context(application):
        transport = ASGITransport(app=application, client=("203.0.113.7", 4711))
        async with AsyncClient(transport=transport, base_url="http://testserver") as http:
            statuses = []
            for number in range(4):
                response = await http.post(
                    "/api/v1/auth/login",
                    data={"username": f"user{number}@example.com", "password": PASSWORD},
                    headers={"X-Forwarded-For": f"198.51.100.{number}"},
                )
                statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429]


async def test_a_token_verified_before_still_expires(
    app: FastAPI, client: AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A token seen again is not verified again, but its expiry is checked on every use.
    user = await add_user(app, "ada@example.com")
    headers = bearer(await access_token(app, settings, user.id))
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200
    later = utcnow() + timedelta(minutes=settings.ACCESS_TOKEN_MINUTES, seconds=LEEWAY_SECONDS + 5)
    monkeypatch.setattr(security, "utcnow", lambda: later)
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 401


async def test_a_token_verified_under_one_key_is_refused_under_another(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    user = await add_user(app, "ada@example.com")
    token = await access_token(app, settings, user.id)
    assert decode_access_token(token, settings).user_id == user.id
    rotated = settings.model_copy(update={"SECRET_KEY": SecretStr("another key " * 4)})
    with pytest.raises(InvalidTokenError):
        decode_access_token(token, rotated)
    other_audience = settings.model_copy(update={"JWT_AUDIENCE": "another-api"})
    with pytest.raises(InvalidTokenError):
        decode_access_token(token, other_audience)
