"""API keys: shown once and stored as a keyed hash, the role ceiling, revocation, expiry,
a key worth no more than its creator's present role, no account routes, the per-key
throttle and last_used_at. Who may call which route with a key is in the matrix of
test_organizations.py."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from pydantic import SecretStr
from sqlalchemy import select, update

from app.core.clock import as_utc, utcnow
from app.core.config import Settings
from app.core.rbac import Role
from app.core.security import API_KEY_PREFIX, api_key_digest
from app.models import ApiKey, Membership, User
from app.services import api_key_service, organization_service
from tests.support import (
    PASSWORD,
    access_token,
    add_api_key,
    add_user,
    bearer,
    join,
    operations,
    organization_of,
    running_app,
)


async def keys_path(app: FastAPI, user: User) -> str:
    return f"/api/v1/organizations/{await organization_of(app, user)}/api-keys"


async def create_key(
    client: AsyncClient, app: FastAPI, settings: Settings, creator: User, **body: Any
) -> Response:
    token = await access_token(app, settings, creator.id)
    return await client.post(
        await keys_path(app, creator),
        headers=bearer(token),
        json={"name": "CI", "password": PASSWORD, **body},
    )


async def stored_key(app: FastAPI, key_id: str | uuid.UUID) -> ApiKey | None:
    async with app.state.sessionmaker() as session:
        key: ApiKey | None = await session.get(ApiKey, uuid.UUID(str(key_id)))
        return key


async def test_the_secret_is_shown_once_and_stored_as_a_keyed_hash(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    owner = await add_user(app, "owner@example.com")
    response = await create_key(client, app, settings, owner, role="admin")
    assert response.status_code == 201, response.text
    created = response.json()
    secret = created["secret"]
    assert secret.startswith(API_KEY_PREFIX)
    assert secret.startswith(created["prefix"])
    assert len(created["prefix"]) < 16 < len(secret)
    assert created["role"] == "admin"
    assert created["created_by"] == str(owner.id)
    assert created["last_used_at"] is None
    assert created["expires_at"] is None
    # Never again: the list shows the prefix only.
    token = await access_token(app, settings, owner.id)
    listed = await client.get(await keys_path(app, owner), headers=bearer(token))
    assert listed.status_code == 200
    [item] = listed.json()["items"]
    assert "secret" not in item
    assert secret not in listed.text
    assert item["prefix"] == created["prefix"]
    # The table holds an HMAC keyed with a key of the server's, no column the secret.
    key = await stored_key(app, created["id"])
    assert key is not None
    assert secret not in {str(value) for value in vars(key).values()}
    assert key.secret_hash == api_key_digest(secret, settings)
    assert key.secret_hash != hashlib.sha256(secret.encode()).hexdigest()
    assert not hmac.compare_digest(
        key.secret_hash,
        api_key_digest(secret, settings.model_copy(update={"SECRET_KEY": SecretStr("other")})),
    )
    # And it works.
    files = f"/api/v1/organizations/{await organization_of(app, owner)}/files"
    assert (await client.get(files, headers=bearer(secret))).status_code == 200


@pytest.mark.parametrize(
    ("creator_role", "key_role", "expected"),
    [
        (Role.OWNER, Role.OWNER, 201),
        (Role.OWNER, Role.ADMIN, 201),
        (Role.OWNER, Role.MEMBER, 201),
        (Role.ADMIN, Role.OWNER, 403),
        (Role.ADMIN, Role.ADMIN, 201),
        (Role.ADMIN, Role.MEMBER, 201),
        (Role.MEMBER, Role.MEMBER, 403),
    ],
)
async def test_a_keys_role_is_at_most_its_creators(
    app: FastAPI,
    client: AsyncClient,
    settings: Settings,
    creator_role: Role,
    key_role: Role,
    expected: int,
) -> None:
    owner = await add_user(app, "owner@example.com")
    organization = await organization_of(app, owner)
    creator = owner
    if creator_role is not Role.OWNER:
        creator = await add_user(app, "creator@example.com")
        await join(app, organization, creator, creator_role)
    token = await access_token(app, settings, creator.id)
    response = await client.post(
        f"/api/v1/organizations/{organization}/api-keys",
        headers=bearer(token),
        json={"name": "deploy", "role": key_role, "password": PASSWORD},
    )
    assert response.status_code == expected, response.text


async def test_an_unverified_manager_cannot_create_a_key(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    owner = await add_user(app, "owner@example.com", verified=False)
    response = await create_key(client, app, settings, owner)
    assert response.status_code == 403
    assert "Verify your email" in response.json()["error"]["message"]


async def test_a_key_cannot_make_keys(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    owner = await add_user(app, "owner@example.com")
    secret, _ = await add_api_key(
        app, settings, await organization_of(app, owner), owner, Role.OWNER
    )
    response = await client.post(
        await keys_path(app, owner),
        headers=bearer(secret),
        json={"name": "another", "password": PASSWORD},
    )
    assert response.status_code == 403
    assert "API key" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": " "},
        {"name": "x" * 121},
        {"name": "two\u2028lines"},
        {"name": "CI", "role": "superuser"},
        {"name": "CI", "expires_at": "2001-01-01T00:00:00Z"},
        # Without a zone, a time means different moments to client and server.
        {"name": "CI", "expires_at": "2999-01-01T00:00:00"},
        {"name": "CI", "expires_at": "tomorrow"},
        {"name": "CI", "secret": "chosen by the client"},
    ],
)
async def test_a_bad_key_request_is_a_422_that_says_why(
    app: FastAPI, client: AsyncClient, settings: Settings, body: dict[str, Any]
) -> None:
    owner = await add_user(app, "owner@example.com")
    token = await access_token(app, settings, owner.id)
    response = await client.post(
        await keys_path(app, owner), headers=bearer(token), json={"password": PASSWORD, **body}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]


async def test_revocation_takes_effect_on_the_next_request(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    owner = await add_user(app, "owner@example.com")
    organization = await organization_of(app, owner)
    secret, key_id = await add_api_key(app, settings, organization, owner, Role.ADMIN)
    files = f"/api/v1/organizations/{organization}/files"
    assert (await client.get(files, headers=bearer(secret))).status_code == 200
    token = await access_token(app, settings, owner.id)
    revoked = await client.delete(
        f"/api/v1/organizations/{organization}/api-keys/{key_id}", headers=bearer(token)
    )
    assert revoked.status_code == 204
    refused = await client.get(files, headers=bearer(secret))
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert await stored_key(app, key_id) is None


@pytest.mark.parametrize(
    ("revoker", "key_of", "key_role", "expected"),
    [
        ("owner", "owner", Role.OWNER, 204),
        ("owner", "admin", Role.ADMIN, 204),
        ("admin", "admin", Role.ADMIN, 204),
        ("admin", "other admin", Role.MEMBER, 204),
        ("admin", "other admin", Role.ADMIN, 403),
        ("admin", "owner", Role.OWNER, 403),
        ("admin", "owner", Role.MEMBER, 204),
        ("member", "admin", Role.MEMBER, 403),
    ],
)
async def test_who_revokes_which_key(
    app: FastAPI,
    client: AsyncClient,
    settings: Settings,
    revoker: str,
    key_of: str,
    key_role: Role,
    expected: int,
) -> None:
    owner = await add_user(app, "owner@example.com")
    organization = await organization_of(app, owner)
    people = {"owner": owner}
    for name, role in (("admin", Role.ADMIN), ("other admin", Role.ADMIN), ("member", Role.MEMBER)):
        people[name] = await add_user(app, f"{name.replace(' ', '-')}@example.com")
        await join(app, organization, people[name], role)
    _, key_id = await add_api_key(app, settings, organization, people[key_of], key_role)
    token = await access_token(app, settings, people[revoker].id)
    response = await client.delete(
        f"/api/v1/organizations/{organization}/api-keys/{key_id}", headers=bearer(token)
    )
    assert response.status_code == expected, response.text
    assert (await stored_key(app, key_id) is None) is (expected == 204)


async def test_an_expired_key_is_refused(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    owner = await add_user(app, "owner@example.com")
    organization = await organization_of(app, owner)
    files = f"/api/v1/organizations/{organization}/files"
    soon = utcnow() + timedelta(hours=1)
    secret, key_id = await add_api_key(app, settings, organization, owner, expires_at=soon)
    assert (await client.get(files, headers=bearer(secret))).status_code == 200
    async with app.state.sessionmaker.begin() as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert (await client.get(files, headers=bearer(secret))).status_code == 401


async def test_an_expiry_given_comes_back_in_utc(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    owner = await add_user(app, "owner@example.com")
    response = await create_key(
        client, app, settings, owner, expires_at="2999-06-01T12:00:00+02:00"
    )
    assert response.status_code == 201, response.text
    assert response.json()["expires_at"] == "2999-06-01T10:00:00Z"
    key = await stored_key(app, response.json()["id"])
    assert key is not None
    assert key.expires_at is not None
    assert as_utc(key.expires_at) == datetime(2999, 6, 1, 10, tzinfo=UTC)


@pytest.fixture
async def admin_key(app: FastAPI, settings: Settings) -> tuple[uuid.UUID, User, User, str]:
    """An organization, its owner, an admin, and an admin key the admin made."""
    owner = await add_user(app, "owner@example.com")
    organization = await organization_of(app, owner)
    admin = await add_user(app, "admin@example.com")
    await join(app, organization, admin, Role.ADMIN)
    secret, _ = await add_api_key(app, settings, organization, admin, Role.ADMIN)
    return organization, owner, admin, secret


async def test_a_key_is_worth_its_creators_present_role(
    app: FastAPI, client: AsyncClient, settings: Settings, admin_key: tuple[Any, ...]
) -> None:
    organization, owner, admin, secret = admin_key
    rename = {"name": "Renamed by a key"}
    path = f"/api/v1/organizations/{organization}"
    assert (await client.patch(path, headers=bearer(secret), json=rename)).status_code == 200
    token = await access_token(app, settings, owner.id)
    demoted = await client.put(
        f"{path}/members/{admin.id}/role", headers=bearer(token), json={"role": "member"}
    )
    assert demoted.status_code == 200
    # The key's own role is admin; its creator is a member now, and so is the key.
    assert (await client.patch(path, headers=bearer(secret), json=rename)).status_code == 403
    read = await client.get(path, headers=bearer(secret))
    assert read.status_code == 200
    assert read.json()["role"] == "member"


@pytest.mark.parametrize("how", ["removed", "leaves", "deactivated", "deleted"])
async def test_a_key_stops_when_its_creator_goes(
    app: FastAPI,
    client: AsyncClient,
    settings: Settings,
    admin_key: tuple[Any, ...],
    how: str,
) -> None:
    organization, owner, admin, secret = admin_key
    path = f"/api/v1/organizations/{organization}"
    assert (await client.get(path, headers=bearer(secret))).status_code == 200
    owner_token = bearer(await access_token(app, settings, owner.id))
    platform = await add_user(app, "platform@example.com", Role.OWNER)
    platform_token = bearer(await access_token(app, settings, platform.id))
    if how == "removed":
        gone = await client.delete(f"{path}/members/{admin.id}", headers=owner_token)
    elif how == "leaves":
        admin_token = bearer(await access_token(app, settings, admin.id))
        gone = await client.post(f"{path}/leave", headers=admin_token)
    elif how == "deactivated":
        gone = await client.post(f"/api/v1/users/{admin.id}/deactivate", headers=platform_token)
    else:
        gone = await client.delete(f"/api/v1/users/{admin.id}", headers=platform_token)
    assert gone.is_success, gone.text
    assert (await client.get(path, headers=bearer(secret))).status_code == 401
    async with app.state.sessionmaker() as session:
        left = (await session.scalars(select(ApiKey.created_by))).all()
    # Leaving, removal and deletion take the keys with them; a deactivated account's keys
    # stay, refused, and work again if it is activated.
    assert (admin.id in left) is (how == "deactivated")


async def test_a_key_opens_no_other_organization(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    owner = await add_user(app, "owner@example.com")
    mine = await organization_of(app, owner)
    secret, _ = await add_api_key(app, settings, mine, owner, Role.OWNER)
    # Another organization the same person owns: the key is of the first one only.
    token = await access_token(app, settings, owner.id)
    created = await client.post(
        "/api/v1/organizations", headers=bearer(token), json={"name": "Second"}
    )
    second = created.json()["id"]
    for path in (f"/api/v1/organizations/{second}", f"/api/v1/organizations/{second}/files"):
        response = await client.get(path, headers=bearer(secret))
        assert response.status_code == 404, path
        assert response.json()["error"]["message"] == "No such organization."


async def test_no_account_or_platform_route_takes_a_key(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    owner = await add_user(app, "owner@example.com", Role.OWNER)
    secret, _ = await add_api_key(
        app, settings, await organization_of(app, owner), owner, Role.OWNER
    )
    guarded = [
        (method, path)
        for (method, path), operation in operations(app).items()
        if operation.get("security") and not path.startswith("/api/v1/organizations/{org_id}")
    ]
    assert ("GET", "/api/v1/users/me") in guarded
    assert ("POST", "/api/v1/auth/change-password") in guarded
    for method, path in guarded:
        concrete = path.replace("{user_id}", str(owner.id))
        response = await client.request(method, concrete, headers=bearer(secret), json={})
        assert response.status_code == 403, (method, path, response.text)
        assert "An API key does not open this route" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "credential",
    [
        API_KEY_PREFIX,
        API_KEY_PREFIX + "0" * 8 + "_" + "A" * 43,
        API_KEY_PREFIX + "x" * 5000,
        API_KEY_PREFIX + "\u00e9\u00e8",
        API_KEY_PREFIX + "%00' OR 1=1 --",
    ],
    ids=["prefix only", "well formed, unknown", "very long", "latin-1", "injection"],
)
async def test_a_forged_key_is_a_401(
    app: FastAPI, client: AsyncClient, settings: Settings, credential: str
) -> None:
    owner = await add_user(app, "owner@example.com")
    path = f"/api/v1/organizations/{await organization_of(app, owner)}"
    response = await client.get(
        path, headers={b"Authorization": f"Bearer {credential}".encode("latin-1")}
    )
    assert response.status_code == 401, response.text


async def test_requests_with_a_key_are_throttled_per_key(settings: Settings) -> None:
    async with running_app(settings, API_KEY_LIMIT_PER_KEY="3/minute") as (app, client):
        owner = await add_user(app, "owner@example.com")
        organization = await organization_of(app, owner)
        first, _ = await add_api_key(app, settings, organization, owner)
        second, _ = await add_api_key(app, settings, organization, owner)
        path = f"/api/v1/organizations/{organization}"
        answers = await asyncio.gather(*(client.get(path, headers=bearer(first)) for _ in range(5)))
        assert sorted(answer.status_code for answer in answers) == [200, 200, 200, 429, 429]
        limited = next(answer for answer in answers if answer.status_code == 429)
        assert int(limited.headers["Retry-After"]) > 0
        # Another key of the same organization, and its people, have budgets of their own.
        assert (await client.get(path, headers=bearer(second))).status_code == 200
        token = await access_token(app, settings, owner.id)
        assert (await client.get(path, headers=bearer(token))).status_code == 200


async def test_last_used_at_is_written_at_most_once_a_minute(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    owner = await add_user(app, "owner@example.com")
    organization = await organization_of(app, owner)
    secret, key_id = await add_api_key(app, settings, organization, owner)
    path = f"/api/v1/organizations/{organization}"
    before = utcnow()
    assert (await client.get(path, headers=bearer(secret))).status_code == 200
    key = await stored_key(app, key_id)
    assert key is not None
    assert key.last_used_at is not None
    first_use = as_utc(key.last_used_at)
    assert first_use >= before
    for _ in range(3):
        assert (await client.post(f"{path}/files", headers=bearer(secret))).status_code == 415
        assert (await client.get(path, headers=bearer(secret))).status_code == 200
    key = await stored_key(app, key_id)
    assert key is not None
    assert key.last_used_at is not None
    assert as_utc(key.last_used_at) == first_use
    # A minute on, the next request writes it again.
    async with app.state.sessionmaker.begin() as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(last_used_at=first_use - timedelta(seconds=api_key_service.USE_RECORD_SECONDS))
        )
    assert (await client.get(path, headers=bearer(secret))).status_code == 200
    key = await stored_key(app, key_id)
    assert key is not None
    assert key.last_used_at is not None
    assert as_utc(key.last_used_at) > first_use


async def test_a_key_of_an_unverified_creator_cannot_upload(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    owner = await add_user(app, "owner@example.com", verified=False)
    organization = await organization_of(app, owner)
    secret, _ = await add_api_key(app, settings, organization, owner, Role.OWNER)
    response = await client.post(
        f"/api/v1/organizations/{organization}/files",
        headers=bearer(secret),
        files={"file": ("notes.txt", b"meeting notes\n", "text/plain")},
    )
    assert response.status_code == 403
    assert "Verify your email" in response.json()["error"]["message"]


async def test_a_use_is_recorded_whatever_the_answer(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    owner = await add_user(app, "owner@example.com")
    organization = await organization_of(app, owner)
    secret, key_id = await add_api_key(app, settings, organization, owner)
    # A member key may not rename the organization: a 403, after the key was checked.
    refused = await client.patch(
        f"/api/v1/organizations/{organization}", headers=bearer(secret), json={"name": "No"}
    )
    assert refused.status_code == 403
    key = await stored_key(app, key_id)
    assert key is not None
    assert key.last_used_at is not None


async def test_a_failure_to_record_a_use_leaves_the_answer_alone(
    app: FastAPI,
    client: AsyncClient,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner = await add_user(app, "owner@example.com")
    organization = await organization_of(app, owner)
    secret, key_id = await add_api_key(app, settings, organization, owner)

    def unreachable(sessionmaker: object) -> object:
        # What the driver raises itself when the database's address stops answering.
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr(api_key_service, "session_scope", unreachable)
    with caplog.at_level(logging.WARNING):
        response = await client.get(f"/api/v1/organizations/{organization}", headers=bearer(secret))
    assert response.status_code == 200
    # One warning, and no error: nothing reaches the server's error log after the answer.
    logged = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert [record.levelname for record in logged] == ["WARNING"]
    assert "Could not record the use of API key" in logged[0].getMessage()
    key = await stored_key(app, key_id)
    assert key is not None
    assert key.last_used_at is None


async def test_a_route_with_two_guards_spends_one_request_of_the_budget(
    settings: Settings,
) -> None:
    async with running_app(settings, API_KEY_LIMIT_PER_KEY="2/minute") as (app, client):
        owner = await add_user(app, "owner@example.com")
        organization = await organization_of(app, owner)
        member = await add_user(app, "member@example.com")
        await join(app, organization, member, Role.MEMBER)
        secret, _ = await add_api_key(app, settings, organization, owner, Role.OWNER)
        path = f"/api/v1/organizations/{organization}"
        # The route's own guard (owners) and its member's lookup (any member): one request.
        changed = await client.put(
            f"{path}/members/{member.id}/role", headers=bearer(secret), json={"role": "admin"}
        )
        assert changed.status_code == 200, changed.text
        assert (await client.get(path, headers=bearer(secret))).status_code == 200
        assert (await client.get(path, headers=bearer(secret))).status_code == 429


async def test_a_keys_own_role_holds_against_what_changed_before_the_lock(
    app: FastAPI, settings: Settings
) -> None:
    """An admin key of an owner, on its way to remove a member who is made admin before
    the removal takes its lock: under the lock, the key is still an admin's and may not
    remove an admin, whatever its creator could."""
    owner = await add_user(app, "owner@example.com")
    organization = await organization_of(app, owner)
    target = await add_user(app, "target@example.com")
    await join(app, organization, target, Role.MEMBER)
    secret, _ = await add_api_key(app, settings, organization, owner, Role.ADMIN)
    async with app.state.sessionmaker() as session:
        access, _key = await api_key_service.access(session, settings, secret, organization)
        membership = await organization_service.get_member(session, access.organization, target.id)
        assert (access.role, membership.role) == (Role.ADMIN, Role.MEMBER)
        await session.commit()
        async with app.state.sessionmaker.begin() as other:
            await other.execute(
                update(Membership)
                .where(Membership.organization_id == organization, Membership.user_id == target.id)
                .values(role=Role.ADMIN)
            )
        with pytest.raises(organization_service.OrganizationPolicyError):
            await organization_service.remove_member(session, access, membership)
    async with app.state.sessionmaker() as session:
        stays = await session.scalar(
            select(Membership.role).where(
                Membership.organization_id == organization, Membership.user_id == target.id
            )
        )
    assert stays is Role.ADMIN


async def test_the_new_keys_answer_is_kept_by_no_cache(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    owner = await add_user(app, "owner@example.com")
    response = await create_key(client, app, settings, owner)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"


async def test_a_key_takes_the_creators_password_on_the_login_budget(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    """An access token alone, stolen, makes no key: creating one takes the password, and
    guessing it spends the budget logins spend."""
    owner = await add_user(app, "owner@example.com")
    answers = [
        await create_key(client, app, settings, owner, password=f"guess number {number}")
        for number in range(6)
    ]
    assert [answer.status_code for answer in answers] == [400] * 5 + [429]
    assert answers[0].json()["error"]["message"] == "The current password is not correct."
    # Spent: the right password waits for the budget too, and no key was made.
    assert (await create_key(client, app, settings, owner)).status_code == 429
    async with app.state.sessionmaker() as session:
        assert (await session.scalars(select(ApiKey))).all() == []
