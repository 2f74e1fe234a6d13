"""The audit log: every event type written once, with its actor, organization, target,
client address and user agent, never a secret; who reads which events; the filters and
pages; and the prune job, run by a real worker. Who may call the two routes is in the
matrices of test_authorization.py and test_organizations.py."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select, update

from app.core.clock import as_utc, utcnow
from app.core.config import Settings
from app.core.rbac import Role
from app.core.request_context import USER_AGENT_MAX_LENGTH
from app.core.security import digest, new_opaque_token
from app.models import AuditEvent, AuditType, Invitation, TokenPurpose, User
from app.services import audit_service, retention_service, token_service
from tests.servers import start_worker
from tests.support import (
    PASSWORD,
    access_token,
    add_api_key,
    add_user,
    bearer,
    join,
    link_token,
    messages_to,
    operations,
    organization_of,
    running_app,
)

USER_AGENT = "audit-client/1.0"
NEW_PASSWORD = "a brand new passphrase for audits"
AUDIT = "/api/v1/audit-events"


@dataclass
class Scene:
    """A platform owner (`boss`) with an organization, a member of it (`mate`) and a client
    that says who it is; `secrets` collects every credential the test used."""

    app: FastAPI
    settings: Settings
    client: AsyncClient
    boss: User
    mate: User
    organization: uuid.UUID
    secrets: list[str]

    async def headers(self, user: User) -> dict[str, str]:
        token = await access_token(self.app, self.settings, user.id)
        self.secrets.append(token)
        return bearer(token)

    def org(self, suffix: str = "") -> str:
        return f"/api/v1/organizations/{self.organization}{suffix}"

    async def login(self, user: User, password: str = PASSWORD) -> dict[str, Any]:
        response = await self.client.post(
            "/api/v1/auth/login", data={"username": user.email, "password": password}
        )
        body: dict[str, Any] = response.json()
        if response.is_success:
            self.secrets += [body["access_token"], body["refresh_token"]]
        return body

    async def one_time_token(self, user: User, purpose: TokenPurpose) -> str:
        async with self.app.state.sessionmaker.begin() as session:
            token = await token_service.issue_one_time_token(
                session, user.id, purpose, timedelta(hours=1), email=user.email
            )
        self.secrets.append(token)
        return token


@pytest.fixture
async def scene(app: FastAPI, settings: Settings, client: AsyncClient) -> Scene:
    client.headers["User-Agent"] = USER_AGENT
    boss = await add_user(app, "boss@example.com", Role.OWNER)
    mate = await add_user(app, "mate@example.com")
    organization = await organization_of(app, boss)
    await join(app, organization, mate, Role.MEMBER)
    return Scene(app, settings, client, boss, mate, organization, [PASSWORD, NEW_PASSWORD])


async def stored_events(app: FastAPI, kind: AuditType | None = None) -> list[AuditEvent]:
    async with app.state.sessionmaker() as session:
        query = select(AuditEvent).order_by(AuditEvent.created_at)
        if kind is not None:
            query = query.where(AuditEvent.type == kind.value)
        return list(await session.scalars(query))


def expect(
    actor: User | None,
    target: tuple[str, uuid.UUID] | None,
    organization: uuid.UUID | None = None,
    api_key: uuid.UUID | None = None,
    changed: tuple[str, str] | None = None,
    **details: Any,
) -> dict[str, Any]:
    """The event a case expects; `changed` is a change's "from" and "to" details."""
    if changed is not None:
        details |= {"from": changed[0], "to": changed[1]}
    return {
        "actor_user_id": actor.id if actor else None,
        "actor_api_key_id": api_key,
        "organization_id": organization,
        "target": target,
        "details": details,
    }


# Each case does one thing through the API and says what its event must hold. A detail
# given as ... must be present, with any value.
Case = Callable[[Scene], Awaitable[dict[str, Any]]]


async def login_succeeded(s: Scene) -> dict[str, Any]:
    await s.login(s.mate)
    return expect(s.mate, ("user", s.mate.id), session_id=...)


async def login_failed(s: Scene) -> dict[str, Any]:
    response = await s.client.post(
        "/api/v1/auth/login", data={"username": s.mate.email, "password": "not the password"}
    )
    assert response.status_code == 401
    return expect(None, ("user", s.mate.id), email=s.mate.email, reason="wrong password")


async def refresh_token_reused(s: Scene) -> dict[str, Any]:
    tokens = await s.login(s.mate)
    body = {"refresh_token": tokens["refresh_token"]}
    rotated = await s.client.post("/api/v1/auth/refresh", json=body)
    assert rotated.status_code == 200
    s.secrets += [rotated.json()["access_token"], rotated.json()["refresh_token"]]
    assert (await s.client.post("/api/v1/auth/refresh", json=body)).status_code == 401
    return expect(None, ("user", s.mate.id), session_id=...)


async def logout(s: Scene) -> dict[str, Any]:
    tokens = await s.login(s.mate)
    response = await s.client.post(
        "/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}
    )
    assert response.status_code == 204
    return expect(s.mate, ("user", s.mate.id), session_id=...)


async def password_changed(s: Scene) -> dict[str, Any]:
    response = await s.client.post(
        "/api/v1/auth/change-password",
        headers=await s.headers(s.mate),
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 200, response.text
    s.secrets += [response.json()["access_token"], response.json()["refresh_token"]]
    return expect(s.mate, ("user", s.mate.id))


async def password_confirmation_failed(s: Scene) -> dict[str, Any]:
    response = await s.client.post(
        s.org("/api-keys"),
        headers=await s.headers(s.boss),
        json={"name": "CI", "password": "a guess with a stolen token"},
    )
    assert response.status_code == 400, response.text
    s.secrets.append("a guess with a stolen token")
    return expect(s.boss, ("user", s.boss.id))


async def password_reset(s: Scene) -> dict[str, Any]:
    token = await s.one_time_token(s.mate, TokenPurpose.RESET_PASSWORD)
    response = await s.client.post(
        "/api/v1/auth/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 204, response.text
    return expect(s.mate, ("user", s.mate.id))


async def email_verified(s: Scene) -> dict[str, Any]:
    async with s.app.state.sessionmaker.begin() as session:
        await session.execute(update(User).where(User.id == s.mate.id).values(is_verified=False))
    token = await s.one_time_token(s.mate, TokenPurpose.VERIFY_EMAIL)
    response = await s.client.post("/api/v1/auth/verify", json={"token": token})
    assert response.status_code == 204, response.text
    return expect(s.mate, ("user", s.mate.id), email=s.mate.email)


async def user_registered(s: Scene) -> dict[str, Any]:
    response = await s.client.post(
        "/api/v1/auth/register", json={"email": "newcomer@example.com", "password": PASSWORD}
    )
    assert response.status_code == 202, response.text
    async with s.app.state.sessionmaker() as session:
        newcomer = await session.scalar(select(User).where(User.email == "newcomer@example.com"))
    assert newcomer is not None
    return expect(newcomer, ("user", newcomer.id), role="member")


async def user_role_changed(s: Scene) -> dict[str, Any]:
    response = await s.client.put(
        f"/api/v1/users/{s.mate.id}/role", headers=await s.headers(s.boss), json={"role": "admin"}
    )
    assert response.status_code == 200, response.text
    return expect(s.boss, ("user", s.mate.id), changed=("member", "admin"))


async def user_deactivated(s: Scene) -> dict[str, Any]:
    path = f"/api/v1/users/{s.mate.id}/deactivate"
    response = await s.client.post(path, headers=await s.headers(s.boss))
    assert response.status_code == 200, response.text
    return expect(s.boss, ("user", s.mate.id))


async def user_activated(s: Scene) -> dict[str, Any]:
    async with s.app.state.sessionmaker.begin() as session:
        await session.execute(update(User).where(User.id == s.mate.id).values(is_active=False))
    path = f"/api/v1/users/{s.mate.id}/activate"
    response = await s.client.post(path, headers=await s.headers(s.boss))
    assert response.status_code == 200, response.text
    return expect(s.boss, ("user", s.mate.id))


async def user_deleted(s: Scene) -> dict[str, Any]:
    response = await s.client.delete(f"/api/v1/users/{s.mate.id}", headers=await s.headers(s.boss))
    assert response.status_code == 204, response.text
    return expect(s.boss, ("user", s.mate.id), email=s.mate.email)


async def new_organization(s: Scene) -> uuid.UUID:
    response = await s.client.post(
        "/api/v1/organizations", headers=await s.headers(s.boss), json={"name": "Acme"}
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def organization_created(s: Scene) -> dict[str, Any]:
    created = await new_organization(s)
    return expect(s.boss, ("organization", created), created, name="Acme")


async def organization_renamed(s: Scene) -> dict[str, Any]:
    response = await s.client.patch(
        s.org(), headers=await s.headers(s.boss), json={"name": "Renamed"}
    )
    assert response.status_code == 200, response.text
    return expect(
        s.boss,
        ("organization", s.organization),
        s.organization,
        changed=("boss's organization", "Renamed"),
    )


async def organization_deleted(s: Scene) -> dict[str, Any]:
    created = await new_organization(s)
    path = f"/api/v1/organizations/{created}"
    assert (await s.client.delete(path, headers=await s.headers(s.boss))).status_code == 204
    return expect(s.boss, ("organization", created), created, name="Acme")


async def member_role_changed(s: Scene) -> dict[str, Any]:
    response = await s.client.put(
        s.org(f"/members/{s.mate.id}/role"),
        headers=await s.headers(s.boss),
        json={"role": "admin"},
    )
    assert response.status_code == 200, response.text
    return expect(s.boss, ("user", s.mate.id), s.organization, changed=("member", "admin"))


async def member_removed(s: Scene) -> dict[str, Any]:
    await add_api_key(s.app, s.settings, s.organization, s.mate)  # goes with its creator
    response = await s.client.delete(
        s.org(f"/members/{s.mate.id}"), headers=await s.headers(s.boss)
    )
    assert response.status_code == 204, response.text
    return expect(s.boss, ("user", s.mate.id), s.organization, role="member", api_keys_deleted=1)


async def member_left(s: Scene) -> dict[str, Any]:
    response = await s.client.post(s.org("/leave"), headers=await s.headers(s.mate))
    assert response.status_code == 204, response.text
    return expect(s.mate, ("user", s.mate.id), s.organization, role="member", api_keys_deleted=0)


async def invite(s: Scene, email: str = "guest@example.com") -> tuple[uuid.UUID, str]:
    """An invitation of `email` as admin, and its token."""
    response = await s.client.post(
        s.org("/invitations"),
        headers=await s.headers(s.boss),
        json={"email": email, "role": "admin"},
    )
    assert response.status_code == 201, response.text
    (message,) = messages_to(s.settings, email)
    token = link_token(message)
    s.secrets.append(token)
    return uuid.UUID(response.json()["id"]), token


async def invitation_sent(s: Scene) -> dict[str, Any]:
    invitation, _ = await invite(s)
    return expect(
        s.boss, ("invitation", invitation), s.organization, email="guest@example.com", role="admin"
    )


async def invitation_accepted(s: Scene) -> dict[str, Any]:
    guest = await add_user(s.app, "guest@example.com")
    invitation, token = await invite(s)
    response = await s.client.post(
        "/api/v1/invitations/accept", headers=await s.headers(guest), json={"token": token}
    )
    assert response.status_code == 200, response.text
    return expect(
        guest, ("invitation", invitation), s.organization, email="guest@example.com", role="admin"
    )


async def invitation_revoked(s: Scene) -> dict[str, Any]:
    invitation, _ = await invite(s)
    response = await s.client.delete(
        s.org(f"/invitations/{invitation}"), headers=await s.headers(s.boss)
    )
    assert response.status_code == 204, response.text
    return expect(
        s.boss, ("invitation", invitation), s.organization, email="guest@example.com", role="admin"
    )


async def api_key_created(s: Scene) -> dict[str, Any]:
    response = await s.client.post(
        s.org("/api-keys"),
        headers=await s.headers(s.boss),
        json={"name": "CI", "role": "admin", "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    key = response.json()
    s.secrets.append(key["secret"])
    return expect(
        s.boss,
        ("api_key", uuid.UUID(key["id"])),
        s.organization,
        name="CI",
        prefix=key["prefix"],
        role="admin",
    )


async def api_key_first_used(s: Scene) -> dict[str, Any]:
    secret, key_id = await add_api_key(s.app, s.settings, s.organization, s.boss, Role.ADMIN)
    s.secrets.append(secret)
    for _ in range(2):  # the second use is no event
        assert (await s.client.get(s.org(), headers=bearer(secret))).status_code == 200
    return expect(
        s.boss, ("api_key", key_id), s.organization, api_key=key_id, prefix=prefix_of(secret)
    )


async def api_key_revoked(s: Scene) -> dict[str, Any]:
    secret, key_id = await add_api_key(s.app, s.settings, s.organization, s.mate)
    s.secrets.append(secret)
    path = s.org(f"/api-keys/{key_id}")
    assert (await s.client.delete(path, headers=await s.headers(s.boss))).status_code == 204
    return expect(
        s.boss,
        ("api_key", key_id),
        s.organization,
        name="member key",
        prefix=prefix_of(secret),
        role="member",
    )


async def file_deleted(s: Scene) -> dict[str, Any]:
    headers = await s.headers(s.mate)
    uploaded = await s.client.post(
        s.org("/files"), headers=headers, files={"file": ("notes.txt", b"hello", "text/plain")}
    )
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]
    response = await s.client.delete(s.org(f"/files/{file_id}"), headers=headers)
    assert response.status_code == 204, response.text
    return expect(
        s.mate,
        ("file", uuid.UUID(file_id)),
        s.organization,
        name="notes.txt",
        size=5,
        uploaded_by=str(s.mate.id),
    )


def prefix_of(secret: str) -> str:
    """The visible start of a key: ak_ and eight hex digits."""
    return "_".join(secret.split("_")[:2])


CASES: dict[AuditType, Case] = {
    AuditType.LOGIN_SUCCEEDED: login_succeeded,
    AuditType.LOGIN_FAILED: login_failed,
    AuditType.REFRESH_TOKEN_REUSED: refresh_token_reused,
    AuditType.LOGOUT: logout,
    AuditType.PASSWORD_CHANGED: password_changed,
    AuditType.PASSWORD_CONFIRMATION_FAILED: password_confirmation_failed,
    AuditType.PASSWORD_RESET: password_reset,
    AuditType.EMAIL_VERIFIED: email_verified,
    AuditType.USER_REGISTERED: user_registered,
    AuditType.USER_ROLE_CHANGED: user_role_changed,
    AuditType.USER_DEACTIVATED: user_deactivated,
    AuditType.USER_ACTIVATED: user_activated,
    AuditType.USER_DELETED: user_deleted,
    AuditType.ORGANIZATION_CREATED: organization_created,
    AuditType.ORGANIZATION_RENAMED: organization_renamed,
    AuditType.ORGANIZATION_DELETED: organization_deleted,
    AuditType.MEMBER_ROLE_CHANGED: member_role_changed,
    AuditType.MEMBER_REMOVED: member_removed,
    AuditType.MEMBER_LEFT: member_left,
    AuditType.INVITATION_SENT: invitation_sent,
    AuditType.INVITATION_ACCEPTED: invitation_accepted,
    AuditType.INVITATION_REVOKED: invitation_revoked,
    AuditType.API_KEY_CREATED: api_key_created,
    AuditType.API_KEY_FIRST_USED: api_key_first_used,
    AuditType.API_KEY_REVOKED: api_key_revoked,
    AuditType.FILE_DELETED: file_deleted,
}


def test_every_event_type_has_a_case() -> None:
    assert set(CASES) == set(AuditType), "add a case to CASES in backend/tests/test_audit.py"


def holds_no_secret(events: list[AuditEvent], secrets: list[str]) -> None:
    columns = [column.key for column in AuditEvent.__table__.columns]
    text = json.dumps(
        [{column: getattr(event, column) for column in columns} for event in events], default=str
    )
    for secret in secrets:
        assert secret not in text


@pytest.mark.parametrize("kind", list(CASES), ids=[kind.value for kind in CASES])
async def test_each_event_is_written_once_with_its_fields(scene: Scene, kind: AuditType) -> None:
    before = len(await stored_events(scene.app, kind))
    wanted = await CASES[kind](scene)
    events = await stored_events(scene.app, kind)
    assert len(events) == before + 1, [event.details for event in events]
    event = events[-1]
    found = {
        "actor_user_id": event.actor_user_id,
        "actor_api_key_id": event.actor_api_key_id,
        "organization_id": event.organization_id,
        "target": (event.target_type, event.target_id) if event.target_type else None,
        "details": {
            name: ... if wanted["details"][name] is ... else event.details.get(name)
            for name in wanted["details"]
        },
    }
    assert found == wanted
    assert set(event.details) == set(wanted["details"])
    assert (event.client_address, event.user_agent) == ("127.0.0.1", USER_AGENT)
    assert abs(as_utc(event.created_at) - utcnow()) < timedelta(minutes=1)
    holds_no_secret(await stored_events(scene.app), scene.secrets)


async def test_an_api_key_that_acts_is_named_with_the_user_it_acts_for(scene: Scene) -> None:
    secret, key_id = await add_api_key(
        scene.app, scene.settings, scene.organization, scene.boss, Role.ADMIN
    )
    response = await scene.client.patch(
        scene.org(), headers=bearer(secret), json={"name": "Renamed by a key"}
    )
    assert response.status_code == 200, response.text
    (event,) = await stored_events(scene.app, AuditType.ORGANIZATION_RENAMED)
    assert (event.actor_user_id, event.actor_api_key_id) == (scene.boss.id, key_id)


async def test_a_keys_first_use_is_one_event_however_many_requests_race_to_it(
    scene: Scene,
) -> None:
    secret, key_id = await add_api_key(scene.app, scene.settings, scene.organization, scene.boss)
    answers = await asyncio.gather(
        *(scene.client.get(scene.org(), headers=bearer(secret)) for _ in range(8))
    )
    assert {answer.status_code for answer in answers} == {200}
    (event,) = await stored_events(scene.app, AuditType.API_KEY_FIRST_USED)
    assert event.target_id == key_id


async def test_a_failed_login_is_kept_whatever_the_name_and_a_throttled_one_is_not(
    app: FastAPI, settings: Settings, client: AsyncClient
) -> None:
    password_typed_as_name = "my secret passphrase"
    for username in ("nobody@example.com", password_typed_as_name):
        response = await client.post(
            "/api/v1/auth/login", data={"username": username, "password": PASSWORD}
        )
        assert response.status_code == 401
    unknown, not_an_address = await stored_events(app, AuditType.LOGIN_FAILED)
    assert unknown.details == {"email": "nobody@example.com", "reason": "unknown account"}
    assert (unknown.actor_user_id, unknown.target_id) == (None, None)
    # What is not an address may be a password typed in the wrong field: it is not kept.
    assert not_an_address.details == {"email": None, "reason": "unknown account"}
    holds_no_secret([not_an_address], [password_typed_as_name])

    async with running_app(settings, LOGIN_LIMIT_PER_ACCOUNT="2/minute") as (limited, http):
        codes = [
            (
                await http.post(
                    "/api/v1/auth/login", data={"username": "x@example.com", "password": "no"}
                )
            ).status_code
            for _ in range(4)
        ]
        assert codes == [401, 401, 429, 429]
        # Only what was checked is an event: a flood of refused guesses writes nothing.
        refused = await stored_events(limited, AuditType.LOGIN_FAILED)
        assert [event.details["email"] for event in refused].count("x@example.com") == 2


async def test_deleting_an_account_records_the_organizations_that_go_with_it(
    scene: Scene,
) -> None:
    personal = await organization_of(scene.app, scene.mate)
    await user_deleted(scene)
    (gone,) = await stored_events(scene.app, AuditType.ORGANIZATION_DELETED)
    assert (gone.actor_user_id, gone.organization_id) == (scene.boss.id, personal)
    assert gone.details == {"name": "mate's organization", "with_account": str(scene.mate.id)}
    # The organization that stays sees its member go.
    (left,) = await stored_events(scene.app, AuditType.MEMBER_REMOVED)
    assert (left.organization_id, left.target_id) == (scene.organization, scene.mate.id)
    assert left.details == {"role": "member", "with_account": True}


async def test_an_event_of_a_type_since_removed_still_reads(scene: Scene) -> None:
    async with scene.app.state.sessionmaker.begin() as session:
        event = audit_service.record(
            session, AuditType.LOGOUT, None, organization_id=scene.organization
        )
        event.type = "legacy.removed_type"
    response = await scene.client.get(
        scene.org("/audit-events"), headers=await scene.headers(scene.boss)
    )
    assert response.status_code == 200, response.text
    assert "legacy.removed_type" in {item["type"] for item in response.json()["items"]}


async def test_times_of_any_zone_mean_the_same_to_the_service(scene: Scene) -> None:
    far_east = timezone(timedelta(hours=14))
    recent = await add_event(scene.app, timedelta(hours=1))
    async with scene.app.state.sessionmaker() as session:
        rows, _ = await audit_service.list_events(
            session,
            organization_id=None,
            types=[],
            since=(utcnow() - timedelta(hours=2)).astimezone(far_east),
            until=None,
            limit=100,
            offset=0,
        )
    assert recent in {row.id for row in rows}
    settings = scene.settings.model_copy(update={"AUDIT_RETENTION_DAYS": 1})
    day_old = await add_event(scene.app, timedelta(hours=25))
    await retention_service.prune(
        scene.app.state.sessionmaker, settings, now=utcnow().astimezone(far_east)
    )
    events, _ = await remaining(scene.app)
    assert recent in events
    assert day_old not in events


async def test_an_action_that_fails_leaves_no_event(scene: Scene) -> None:
    # The last owner cannot leave: the refusal rolls the event back with the change.
    response = await scene.client.post(scene.org("/leave"), headers=await scene.headers(scene.boss))
    assert response.status_code == 409
    assert await stored_events(scene.app, AuditType.MEMBER_LEFT) == []


async def test_the_client_address_is_the_one_the_trusted_proxy_gives(
    settings: Settings,
) -> None:
    forged = {"X-Forwarded-For": "203.0.113.9", "User-Agent": "a\x7fb\tc" + "x" * 1000}
    async with running_app(settings) as (app, client):
        await client.post(
            "/api/v1/auth/login",
            data={"username": "a@example.com", "password": "x"},
            headers=forged,
        )
        (event,) = await stored_events(app, AuditType.LOGIN_FAILED)
        # No proxy is trusted: the connection's address, whatever the header says.
        assert event.client_address == "127.0.0.1"
        assert event.user_agent is not None
        assert event.user_agent.startswith("abcxxx")
        assert len(event.user_agent) == USER_AGENT_MAX_LENGTH
    async with running_app(settings, CLIENT_IP_HEADER="Fly-Client-IP") as (app, client):
        await client.post(
            "/api/v1/auth/login",
            data={"username": "a@example.com", "password": "x"},
            headers={"Fly-Client-IP": "2001:db8::7", **forged},
        )
        (event,) = await stored_events(app, AuditType.LOGIN_FAILED)
        assert event.client_address == "2001:db8::7"


async def two_organizations(scene: Scene) -> uuid.UUID:
    """Events in the scene's organization and in another one, of someone else."""
    stranger = await add_user(scene.app, "stranger@example.com")
    theirs = await organization_of(scene.app, stranger)
    headers = await scene.headers(stranger)
    response = await scene.client.patch(
        f"/api/v1/organizations/{theirs}", headers=headers, json={"name": "Theirs"}
    )
    assert response.status_code == 200
    await organization_renamed(scene)
    return theirs


async def test_an_organizations_managers_read_its_events_and_no_others(scene: Scene) -> None:
    theirs = await two_organizations(scene)
    admin = await add_user(scene.app, "admin@example.com")
    await join(scene.app, scene.organization, admin, Role.ADMIN)
    for reader in (scene.boss, admin):
        response = await scene.client.get(
            scene.org("/audit-events"), headers=await scene.headers(reader)
        )
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert items, "no events"
        assert {item["organization_id"] for item in items} == {str(scene.organization)}
        assert "organization.renamed" in {item["type"] for item in items}
    # The other organization's events are its own; account events belong to none.
    everything = await stored_events(scene.app)
    assert any(event.organization_id == theirs for event in everything)


async def test_platform_owners_read_every_event(scene: Scene) -> None:
    theirs = await two_organizations(scene)
    await login_failed(scene)
    response = await scene.client.get(
        AUDIT, headers=await scene.headers(scene.boss), params={"limit": 100}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    organizations = {item["organization_id"] for item in body["items"]}
    assert {str(scene.organization), str(theirs), None} <= organizations
    assert body["total"] == len(await stored_events(scene.app))


async def test_events_come_newest_first_in_pages(scene: Scene) -> None:
    for name in ("one", "two", "three"):
        response = await scene.client.patch(
            scene.org(), headers=await scene.headers(scene.boss), json={"name": name}
        )
        assert response.status_code == 200
    headers = await scene.headers(scene.boss)
    query: dict[str, str | int] = {"type": "organization.renamed", "limit": 2}
    first = (
        await scene.client.get(scene.org("/audit-events"), headers=headers, params=query)
    ).json()
    second = (
        await scene.client.get(
            scene.org("/audit-events"), headers=headers, params={**query, "offset": 2}
        )
    ).json()
    names = [item["details"]["to"] for item in first["items"] + second["items"]]
    assert names == ["three", "two", "one"]
    assert (first["total"], first["limit"], second["offset"]) == (3, 2, 2)


async def test_events_filter_by_type_and_time(scene: Scene) -> None:
    await organization_renamed(scene)
    await member_role_changed(scene)
    await invitation_sent(scene)
    headers = await scene.headers(scene.boss)

    async def types(**params: Any) -> list[str]:
        response = await scene.client.get(
            scene.org("/audit-events"), headers=headers, params=params
        )
        assert response.status_code == 200, response.text
        return sorted(item["type"] for item in response.json()["items"])

    assert await types(type=["member.role_changed", "invitation.sent"]) == [
        "invitation.sent",
        "member.role_changed",
    ]
    (renamed,) = await stored_events(scene.app, AuditType.ORGANIZATION_RENAMED)
    moment = as_utc(renamed.created_at)
    # The same moment written in another zone means the same thing.
    in_tokyo = (moment + timedelta(hours=9)).replace(tzinfo=None).isoformat() + "+09:00"
    assert "organization.renamed" not in await types(until=moment.isoformat())
    assert "organization.renamed" in await types(since=in_tokyo)
    assert await types(since=(utcnow() + timedelta(minutes=1)).isoformat()) == []
    # A type repeated is one parameter of the query, however often it comes.
    assert await types(type=["invitation.sent"] * 200) == ["invitation.sent"]


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"type": "user.hacked"}, "type"),
        ({"since": "2030-01-01T00:00:00"}, "timezone"),
        ({"until": "yesterday"}, "until"),
        ({"since": "2030-01-02T00:00:00Z", "until": "2030-01-01T00:00:00Z"}, "before"),
        ({"since": "0001-01-01T00:00:00+14:00"}, "range"),
        ({"until": "9999-12-31T23:59:59-14:00"}, "range"),
        ({"limit": 0}, "limit"),
    ],
)
async def test_a_bad_filter_is_a_422_that_says_why(
    scene: Scene, params: dict[str, str], says: str
) -> None:
    response = await scene.client.get(
        scene.org("/audit-events"), headers=await scene.headers(scene.boss), params=params
    )
    assert response.status_code == 422, response.text
    assert says in response.text.lower()


def test_no_route_changes_or_deletes_an_event(app: FastAPI) -> None:
    audit_routes = {route for route in operations(app) if "audit" in route[1]}
    assert audit_routes == {
        ("GET", AUDIT),
        ("GET", "/api/v1/organizations/{org_id}/audit-events"),
    }


async def add_event(app: FastAPI, age: timedelta) -> uuid.UUID:
    async with app.state.sessionmaker.begin() as session:
        event = audit_service.record(session, AuditType.LOGOUT, None)
        event.created_at = utcnow() - age
    return event.id


async def add_invitation(app: FastAPI, organization: uuid.UUID, expires_in: timedelta) -> None:
    async with app.state.sessionmaker.begin() as session:
        session.add(
            Invitation(
                organization_id=organization,
                email=f"{uuid.uuid4().hex}@example.com",
                role=Role.MEMBER,
                token_hash=digest(new_opaque_token()),
                expires_at=utcnow() + expires_in,
            )
        )


async def remaining(app: FastAPI) -> tuple[set[uuid.UUID], int]:
    async with app.state.sessionmaker() as session:
        events = set(await session.scalars(select(AuditEvent.id)))
        invitations = await session.scalar(select(func.count()).select_from(Invitation))
    return events, invitations or 0


async def test_the_prune_deletes_old_events_and_expired_invitations_in_batches(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_service, "PRUNE_BATCH", 2)
    old = [await add_event(scene.app, timedelta(days=366)) for _ in range(5)]
    kept = [await add_event(scene.app, timedelta(days=364)) for _ in range(2)]
    await add_invitation(scene.app, scene.organization, timedelta(hours=-1))
    await add_invitation(scene.app, scene.organization, timedelta(hours=1))
    events_before, _ = await remaining(scene.app)
    pruned = await retention_service.prune(
        scene.app.state.sessionmaker, scene.settings, now=utcnow()
    )
    assert pruned == retention_service.Pruned(audit_events=5, invitations=1)
    events, invitations = await remaining(scene.app)
    assert events == events_before - set(old)
    assert set(kept) <= events
    assert invitations == 1


@pytest.mark.redis
async def test_a_worker_prunes_on_its_own(settings: Settings, redis_url: str) -> None:
    async with running_app(settings, REDIS_URL=redis_url, AUDIT_RETENTION_DAYS=30) as (app, _):
        old = await add_event(app, timedelta(days=31))
        recent = await add_event(app, timedelta(days=29))
        worker = start_worker(app.state.settings)
        try:
            # The keeper queues the job within its first ticks; a minute is ample.
            for _ in range(120):
                if old not in (await remaining(app))[0]:
                    break
                await asyncio.sleep(0.5)
        finally:
            worker.terminate()
            output, _ = await asyncio.to_thread(worker.communicate, timeout=60)
        events, _ = await remaining(app)
        assert old not in events, output
        assert recent in events
        assert "Pruned 1 audit event(s) older than 30 days" in output
