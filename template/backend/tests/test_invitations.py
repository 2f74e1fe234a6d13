"""Invitations into an organization: who may invite with which role, the email and its
link, and accepting it: once, in time, by a verified account of the invited address."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select, update

from app.core.clock import utcnow
from app.core.config import Settings
from app.core.rbac import Role
from app.core.security import digest
from app.models import Invitation, Membership, User
from tests.support import (
    PASSWORD,
    access_token,
    add_user,
    bearer,
    join,
    link_token,
    messages_to,
    organization_of,
    register,
    running_app,
    text_body,
)

GRACE = "grace@example.com"


async def headers_of(app: FastAPI, settings: Settings, user: User) -> dict[str, str]:
    return bearer(await access_token(app, settings, user.id))


class Team:
    def __init__(self, organization: uuid.UUID, people: dict[str, dict[str, str]]) -> None:
        self.organization = organization
        self.people = people

    def path(self, suffix: str = "") -> str:
        return f"/api/v1/organizations/{self.organization}{suffix}"


@pytest.fixture
async def team(app: FastAPI, settings: Settings) -> Team:
    owner = await add_user(app, "owner@example.com")
    organization = await organization_of(app, owner)
    people = {"owner": await headers_of(app, settings, owner)}
    for name, role in (("admin", Role.ADMIN), ("member", Role.MEMBER)):
        person = await add_user(app, f"{name}@example.com")
        await join(app, organization, person, role)
        people[name] = await headers_of(app, settings, person)
    return Team(organization, people)


async def invite(
    client: AsyncClient, team: Team, inviter: str, email: str = GRACE, role: str = "member"
) -> int:
    response = await client.post(
        team.path("/invitations"), json={"email": email, "role": role}, headers=team.people[inviter]
    )
    return response.status_code


def invitation_token(settings: Settings, email: str = GRACE) -> str:
    """The token of the newest invitation mailed to `email`."""
    messages = [m for m in messages_to(settings, email) if "invites you" in text_body(m)]
    assert messages, f"no invitation was mailed to {email}"
    return link_token(messages[-1])


async def accept(
    client: AsyncClient, headers: dict[str, str], token: str
) -> tuple[int, dict[str, Any]]:
    response = await client.post(
        "/api/v1/invitations/accept", json={"token": token}, headers=headers
    )
    return response.status_code, response.json()


# Who may invite with which role: owners any, admins members only, members nobody.
INVITES = [
    ("owner", "owner", 201),
    ("owner", "admin", 201),
    ("owner", "member", 201),
    ("admin", "member", 201),
    ("admin", "admin", 403),
    ("admin", "owner", 403),
    ("member", "member", 403),
]


@pytest.mark.parametrize(
    ("inviter", "role", "expected"),
    INVITES,
    ids=[f"{inviter}-invites-{role}" for inviter, role, _ in INVITES],
)
async def test_who_invites_with_which_role(
    client: AsyncClient, settings: Settings, team: Team, inviter: str, role: str, expected: int
) -> None:
    assert await invite(client, team, inviter, role=role) == expected
    mailed = messages_to(settings, GRACE)
    assert len(mailed) == (1 if expected == 201 else 0)


async def test_an_invitation_is_mailed_listed_and_accepted_once(
    app: FastAPI, client: AsyncClient, settings: Settings, team: Team
) -> None:
    assert await invite(client, team, "owner", email="Grace@Example.com", role="admin") == 201
    (message,) = messages_to(settings, GRACE)
    assert message["Subject"].startswith("You are invited to join")
    body = text_body(message)
    assert "owner@example.com invites you" in body
    assert "as admin" in body
    token = invitation_token(settings)
    assert len(token) >= 43  # 256 bits, URL-safe base64
    listed = (await client.get(team.path("/invitations"), headers=team.people["admin"])).json()
    (pending,) = listed["items"]
    assert (pending["email"], pending["role"]) == (GRACE, "admin")
    assert token not in str(listed)
    async with app.state.sessionmaker() as session:
        stored = await session.scalar(select(Invitation))
    assert stored is not None
    assert stored.token_hash == digest(token)
    assert token not in (stored.token_hash, str(stored.id))

    grace = await add_user(app, GRACE)
    headers = await headers_of(app, settings, grace)
    status, joined = await accept(client, headers, token)
    assert status == 200, joined
    assert (joined["id"], joined["role"]) == (str(team.organization), "admin")
    members = (await client.get(team.path("/members"), headers=headers)).json()
    assert GRACE in [member["email"] for member in members["items"]]
    again, error = await accept(client, headers, token)
    assert again == 400
    assert "not valid" in error["error"]["message"]
    assert (await client.get(team.path("/invitations"), headers=team.people["owner"])).json()[
        "total"
    ] == 0


async def test_an_expired_invitation_is_refused(
    app: FastAPI, client: AsyncClient, settings: Settings, team: Team
) -> None:
    assert await invite(client, team, "owner") == 201
    async with app.state.sessionmaker.begin() as session:
        await session.execute(update(Invitation).values(expires_at=utcnow() - timedelta(seconds=1)))
    grace = await add_user(app, GRACE)
    status, error = await accept(
        client, await headers_of(app, settings, grace), invitation_token(settings)
    )
    assert status == 400
    assert "expired" in error["error"]["message"]
    assert await organization_roles(app, grace) == {await organization_of(app, grace): Role.OWNER}


async def organization_roles(app: FastAPI, user: User) -> dict[uuid.UUID, Role]:
    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            select(Membership.organization_id, Membership.role).where(Membership.user_id == user.id)
        )
        return {row.organization_id: row.role for row in rows}


async def test_a_revoked_invitation_is_refused(
    app: FastAPI, client: AsyncClient, settings: Settings, team: Team
) -> None:
    assert await invite(client, team, "admin") == 201
    (pending,) = (await client.get(team.path("/invitations"), headers=team.people["admin"])).json()[
        "items"
    ]
    member_revokes = await client.delete(
        team.path(f"/invitations/{pending['id']}"), headers=team.people["member"]
    )
    assert member_revokes.status_code == 403
    revoked = await client.delete(
        team.path(f"/invitations/{pending['id']}"), headers=team.people["admin"]
    )
    assert revoked.status_code == 204
    grace = await add_user(app, GRACE)
    status, _ = await accept(
        client, await headers_of(app, settings, grace), invitation_token(settings)
    )
    assert status == 400


async def test_an_admin_cannot_revoke_an_invitation_of_an_owner(
    client: AsyncClient, team: Team
) -> None:
    assert await invite(client, team, "owner", role="owner") == 201
    (pending,) = (await client.get(team.path("/invitations"), headers=team.people["owner"])).json()[
        "items"
    ]
    path = team.path(f"/invitations/{pending['id']}")
    assert (await client.delete(path, headers=team.people["admin"])).status_code == 403
    assert (await client.delete(path, headers=team.people["owner"])).status_code == 204


async def test_only_the_invited_address_accepts(
    app: FastAPI, client: AsyncClient, settings: Settings, team: Team
) -> None:
    assert await invite(client, team, "owner") == 201
    token = invitation_token(settings)
    mallory = await add_user(app, "mallory@example.com")
    status, error = await accept(client, await headers_of(app, settings, mallory), token)
    assert status == 403
    assert "another email address" in error["error"]["message"]
    # The attempt spent nothing: the invited person still gets in.
    grace = await add_user(app, GRACE)
    assert (await accept(client, await headers_of(app, settings, grace), token))[0] == 200


async def test_accepting_needs_a_verified_address_and_a_login(
    app: FastAPI, client: AsyncClient, settings: Settings, team: Team
) -> None:
    assert await invite(client, team, "owner") == 201
    token = invitation_token(settings)
    grace = await add_user(app, GRACE, verified=False)
    status, error = await accept(client, await headers_of(app, settings, grace), token)
    assert status == 403
    assert "Verify your email" in error["error"]["message"]
    assert (await accept(client, {}, token))[0] == 401


async def test_someone_without_an_account_registers_and_the_link_still_works(
    client: AsyncClient, settings: Settings, team: Team
) -> None:
    assert await invite(client, team, "owner") == 201
    token = invitation_token(settings)
    await register(client, GRACE)
    verify = [m for m in messages_to(settings, GRACE) if "Confirm" in m["Subject"]]
    verified = await client.post("/api/v1/auth/verify", json={"token": link_token(verify[-1])})
    assert verified.status_code == 204
    login = await client.post("/api/v1/auth/login", data={"username": GRACE, "password": PASSWORD})
    headers = bearer(login.json()["access_token"])
    status, joined = await accept(client, headers, token)
    assert status == 200, joined
    files = await client.get(team.path("/files"), headers=headers)
    assert files.status_code == 200


async def test_inviting_again_replaces_the_pending_invitation(
    app: FastAPI, client: AsyncClient, settings: Settings, team: Team
) -> None:
    assert await invite(client, team, "owner", role="admin") == 201
    first = invitation_token(settings)
    # An admin cannot replace what only an owner may grant.
    assert await invite(client, team, "admin", role="member") == 403
    assert await invite(client, team, "owner", role="member") == 201
    second = invitation_token(settings)
    assert first != second
    listed = (await client.get(team.path("/invitations"), headers=team.people["owner"])).json()
    assert [(item["email"], item["role"]) for item in listed["items"]] == [(GRACE, "member")]
    grace = await add_user(app, GRACE)
    headers = await headers_of(app, settings, grace)
    assert (await accept(client, headers, first))[0] == 400
    status, joined = await accept(client, headers, second)
    assert (status, joined["role"]) == (200, "member")


async def test_inviting_at_once_leaves_one_pending_invitation(
    app: FastAPI, client: AsyncClient, settings: Settings, team: Team
) -> None:
    statuses = await asyncio.gather(*(invite(client, team, "owner") for _ in range(5)))
    assert set(statuses) <= {201, 409}
    assert 201 in statuses
    async with app.state.sessionmaker() as session:
        assert len((await session.scalars(select(Invitation))).all()) == 1


async def test_a_member_is_not_invited_again(client: AsyncClient, team: Team) -> None:
    assert await invite(client, team, "owner", email="member@example.com") == 409


async def test_accepting_twice_at_once_joins_once(
    app: FastAPI, client: AsyncClient, settings: Settings, team: Team
) -> None:
    assert await invite(client, team, "owner") == 201
    token = invitation_token(settings)
    grace = await add_user(app, GRACE)
    headers = await headers_of(app, settings, grace)
    results = await asyncio.gather(*(accept(client, headers, token) for _ in range(3)))
    assert sorted(status for status, _ in results) in (
        [200, 400, 400],
        [200, 400, 409],
        [200, 409, 409],
    )
    assert (await organization_roles(app, grace))[team.organization] is Role.MEMBER


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not an address"},
        {"email": GRACE, "role": "superuser"},
        {"email": GRACE, "extra": True},
        {},
    ],
)
async def test_a_bad_invitation_is_a_422(
    client: AsyncClient, team: Team, body: dict[str, Any]
) -> None:
    response = await client.post(team.path("/invitations"), json=body, headers=team.people["owner"])
    assert response.status_code == 422, response.text


async def test_an_unknown_token_is_a_400(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    grace = await add_user(app, GRACE)
    headers = await headers_of(app, settings, grace)
    for token in ("x", "a" * 43, "\u00e9" * 40):
        assert (await accept(client, headers, token))[0] == 400
    assert (await accept(client, headers, "a" * 257))[0] == 422


async def test_invitations_are_throttled_per_inviter(settings: Settings) -> None:
    async with running_app(settings, INVITATION_LIMIT_PER_INVITER="2/hour") as (app, client):
        owner = await add_user(app, "owner@example.com")
        headers = await headers_of(app, settings, owner)
        path = f"/api/v1/organizations/{await organization_of(app, owner)}/invitations"
        statuses = [
            (
                await client.post(path, json={"email": f"p{n}@example.com"}, headers=headers)
            ).status_code
            for n in range(3)
        ]
        assert statuses == [201, 201, 429]


@pytest.mark.parametrize("change", ["removed", "demoted", "deleted"])
async def test_an_invitation_is_worth_what_its_sender_may_still_grant(
    app: FastAPI, client: AsyncClient, settings: Settings, team: Team, change: str
) -> None:
    # The admin invites an address of their own, then loses their place.
    assert await invite(client, team, "admin") == 201
    token = invitation_token(settings)
    async with app.state.sessionmaker.begin() as session:
        admin = await session.scalar(select(User).where(User.email == "admin@example.com"))
        assert admin is not None
        membership = await session.get_one(Membership, (team.organization, admin.id))
        if change == "removed":
            await session.delete(membership)
        elif change == "demoted":
            membership.role = Role.MEMBER
        else:
            await session.delete(admin)
    grace = await add_user(app, GRACE)
    status, error = await accept(client, await headers_of(app, settings, grace), token)
    assert status == 400
    assert "can no longer grant" in error["error"]["message"]
    assert team.organization not in await organization_roles(app, grace)
