"""An organization deleted while other requests act in it: each of them ends with a 2xx
or a 4xx that says what happened, never a 5xx, and nothing of the organization is left
behind. The races are real on PostgreSQL, where each request has its own connection and
transaction; SQLite takes them in turn."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from sqlalchemy import func, select

from app.core.config import Settings
from app.core.rbac import Role
from app.models import ApiKey, Invitation, Membership, Organization, User
from tests.support import (
    PASSWORD,
    access_token,
    add_user,
    bearer,
    join,
    link_token,
    messages_to,
)

ROUNDS = 5


@dataclass
class Shared:
    """A fresh organization of two owners and a member, for one round."""

    app: FastAPI
    settings: Settings
    client: AsyncClient
    organization: uuid.UUID
    owner: dict[str, str]
    other_owner: dict[str, str]
    member: User
    member_headers: dict[str, str]

    def path(self, suffix: str = "") -> str:
        return f"/api/v1/organizations/{self.organization}{suffix}"


async def shared(app: FastAPI, settings: Settings, client: AsyncClient, round_: int) -> Shared:
    people = [
        await add_user(app, f"{name}-{round_}-{uuid.uuid4().hex[:6]}@example.com")
        for name in ("owner", "other-owner", "member")
    ]
    created = await client.post(
        "/api/v1/organizations",
        headers=bearer(await access_token(app, settings, people[0].id)),
        json={"name": f"Doomed {round_}"},
    )
    assert created.status_code == 201, created.text
    organization = uuid.UUID(created.json()["id"])
    await join(app, organization, people[1], Role.OWNER)
    await join(app, organization, people[2], Role.MEMBER)
    headers = [bearer(await access_token(app, settings, person.id)) for person in people]
    return Shared(
        app, settings, client, organization, headers[0], headers[1], people[2], headers[2]
    )


async def rename(s: Shared) -> Response:
    return await s.client.patch(s.path(), headers=s.other_owner, json={"name": "Renamed"})


async def change_role(s: Shared) -> Response:
    return await s.client.put(
        s.path(f"/members/{s.member.id}/role"), headers=s.other_owner, json={"role": "admin"}
    )


async def remove_member(s: Shared) -> Response:
    return await s.client.delete(s.path(f"/members/{s.member.id}"), headers=s.other_owner)


async def leave(s: Shared) -> Response:
    return await s.client.post(s.path("/leave"), headers=s.member_headers)


async def invite(s: Shared) -> Response:
    return await s.client.post(
        s.path("/invitations"),
        headers=s.other_owner,
        json={"email": f"{uuid.uuid4().hex[:8]}@example.com", "role": "member"},
    )


async def create_key(s: Shared) -> Response:
    return await s.client.post(
        s.path("/api-keys"), headers=s.other_owner, json={"name": "CI", "password": PASSWORD}
    )


async def upload(s: Shared) -> Response:
    return await s.client.post(
        s.path("/files"),
        headers=s.member_headers,
        files={"file": ("notes.txt", b"racing the deletion", "text/plain")},
    )


async def accept_prepared(s: Shared) -> Callable[[], Awaitable[Response]]:
    """An invitation sent before the race, accepted during it."""
    address = f"guest-{uuid.uuid4().hex[:8]}@example.com"
    guest = await add_user(s.app, address)
    response = await s.client.post(
        s.path("/invitations"), headers=s.other_owner, json={"email": address, "role": "member"}
    )
    assert response.status_code == 201, response.text
    (message,) = messages_to(s.settings, address)
    headers = bearer(await access_token(s.app, s.settings, guest.id))
    body = {"token": link_token(message)}
    return lambda: s.client.post("/api/v1/invitations/accept", headers=headers, json=body)


Action = Callable[[Shared], Awaitable[Response]]
Prepare = Callable[[Shared], Awaitable[Callable[[], Awaitable[Response]]]]


def at_once(action: Action) -> Prepare:
    async def prepare(s: Shared) -> Callable[[], Awaitable[Response]]:
        return lambda: action(s)

    return prepare


# Each action, and the statuses it may end with when the deletion comes first or second.
async def delete_too(s: Shared) -> Response:
    return await s.client.delete(s.path(), headers=s.other_owner)


# Each action, and what it ends with when the deletion comes first (404, or 400 for a
# token of an invitation that went with the organization) or second.
RACES: dict[str, tuple[Prepare, set[int]]] = {
    "rename": (at_once(rename), {200, 404}),
    "change a role": (at_once(change_role), {200, 404}),
    "remove a member": (at_once(remove_member), {204, 404}),
    "leave": (at_once(leave), {204, 404}),
    "invite": (at_once(invite), {201, 404}),
    "create an API key": (at_once(create_key), {201, 404}),
    "upload": (at_once(upload), {201, 404}),
    "accept an invitation": (accept_prepared, {200, 400, 404}),
    "delete it too": (at_once(delete_too), {204, 404}),
}


async def left_of(app: FastAPI, organization: uuid.UUID) -> dict[str, int]:
    counts = {}
    async with app.state.sessionmaker() as session:
        for table, column in (
            ("organizations", Organization.id),
            ("memberships", Membership.organization_id),
            ("invitations", Invitation.organization_id),
            ("api_keys", ApiKey.organization_id),
        ):
            counts[table] = (
                await session.scalar(select(func.count()).where(column == organization)) or 0
            )
    return counts


@pytest.mark.parametrize("race", list(RACES))
async def test_a_request_racing_the_organizations_deletion_gets_no_5xx(
    app: FastAPI, settings: Settings, client: AsyncClient, race: str
) -> None:
    prepare, allowed = RACES[race]
    for round_ in range(ROUNDS):
        s = await shared(app, settings, client, round_)
        act = await prepare(s)
        deleted, acted = await asyncio.gather(s.client.delete(s.path(), headers=s.owner), act())
        codes = (deleted.status_code, acted.status_code)
        if race == "delete it too":
            assert sorted(codes) == [204, 404], f"round {round_}: {deleted.text} {acted.text}"
        else:
            assert deleted.status_code == 204, deleted.text
            assert acted.status_code in allowed, f"round {round_}: {codes} {acted.text}"
        assert await left_of(app, s.organization) == dict.fromkeys(
            ("organizations", "memberships", "invitations", "api_keys"), 0
        )
