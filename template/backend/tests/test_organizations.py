"""Organizations: the matrix of roles in an organization, the rules of who changes whom,
the last owner under concurrency, and files scoped to their organization."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from sqlalchemy import func, select

from app.core.clock import utcnow
from app.core.config import Settings
from app.core.queue import JobCall, Jobs
from app.core.rbac import Role
from app.core.security import digest, new_opaque_token
from app.models import File, Invitation, Membership, Organization, User
from app.services import file_service
from tests.support import (
    PASSWORD,
    access_token,
    add_api_key,
    add_user,
    bearer,
    join,
    matrix_row,
    operations,
    organization_of,
    register,
    stored_files,
)

Route = tuple[str, str]
ORG = "/api/v1/organizations/{org_id}"
# Members in person, someone of another organization, nobody, then API keys: one of the
# organization's with each role (made by the member of that role) and one of another
# organization's.
ACTORS = (
    "owner",
    "admin",
    "member",
    "outsider",
    "anonymous",
    "owner key",
    "admin key",
    "member key",
    "foreign key",
)


@dataclass
class World:
    """An organization with an owner, an admin, a member acting and a member acted on
    (the target, who uploaded a file), an outsider with an organization of its own, and
    API keys: the actors' and one to revoke."""

    organization: uuid.UUID
    target: User
    file_id: uuid.UUID
    invitation_id: uuid.UUID
    key_id: uuid.UUID
    tokens: dict[str, str]


async def store_file(app: FastAPI, organization: uuid.UUID, uploader: User) -> uuid.UUID:
    """A file in the organization, in storage and in the database, as an upload leaves it."""
    content = b"quarterly numbers\n"
    stored = File(
        organization_id=organization,
        owner_id=uploader.id,
        object_key=f"uploads/{uuid.uuid4().hex}",
        original_name="numbers.txt",
        content_type="text/plain",
        size=len(content),
        checksum_sha256=hashlib.sha256(content).hexdigest(),
    )
    upload = await app.state.storage.start_upload(stored.object_key, stored.content_type)
    await upload.write(content)
    await upload.complete()
    async with app.state.sessionmaker.begin() as session:
        session.add(stored)
    return stored.id


async def make_world(app: FastAPI, settings: Settings) -> World:
    owner = await add_user(app, "owner@example.com")
    organization = await organization_of(app, owner)
    people = {"owner": owner}
    for name, role in (("admin", Role.ADMIN), ("member", Role.MEMBER)):
        people[name] = await add_user(app, f"{name}@example.com")
        await join(app, organization, people[name], role)
    target = await add_user(app, "target@example.com")
    await join(app, organization, target, Role.MEMBER)
    people["outsider"] = await add_user(app, "outsider@example.com")
    async with app.state.sessionmaker.begin() as session:
        invitation = Invitation(
            organization_id=organization,
            email="invited@example.com",
            role=Role.MEMBER,
            token_hash=digest(new_opaque_token()),
            expires_at=utcnow() + timedelta(days=1),
        )
        session.add(invitation)
    tokens = {name: await access_token(app, settings, user.id) for name, user in people.items()}
    for name, role in (("owner", Role.OWNER), ("admin", Role.ADMIN), ("member", Role.MEMBER)):
        tokens[f"{name} key"], _ = await add_api_key(
            app, settings, organization, people[name], role
        )
    foreign = await organization_of(app, people["outsider"])
    tokens["foreign key"], _ = await add_api_key(
        app, settings, foreign, people["outsider"], Role.OWNER
    )
    _, spare_key = await add_api_key(app, settings, organization, people["admin"], Role.MEMBER)
    return World(
        organization=organization,
        target=target,
        file_id=await store_file(app, organization, target),
        invitation_id=invitation.id,
        key_id=spare_key,
        tokens=tokens,
    )


RequestMaker = Callable[[World], dict[str, Any]]


def nothing(world: World) -> dict[str, Any]:
    return {}


ORG_REQUESTS: dict[Route, RequestMaker] = {
    ("PATCH", ORG): lambda world: {"json": {"name": "Renamed"}},
    ("PUT", f"{ORG}/members/{{user_id}}/role"): lambda world: {"json": {"role": "admin"}},
    ("POST", f"{ORG}/files"): lambda world: {
        "files": {"file": ("notes.txt", b"meeting notes\n", "text/plain")}
    },
    ("POST", f"{ORG}/invitations"): lambda world: {"json": {"email": "new@example.com"}},
    ("POST", f"{ORG}/api-keys"): lambda world: {
        "json": {"name": "CI", "role": "member", "password": PASSWORD}
    },
}

# Expected status per actor, in the order of ACTORS, acting on the organization, on its
# member the target, on the target's file and on a member key an admin made. To an
# outsider the organization does not exist, nor to a key of another organization;
# anonymous requests are refused before anything is looked up. A key does what its role
# allows, except what is done in person (deleting the organization, leaving, inviting,
# managing keys): 403 for any key of the organization.
ORG_MATRIX: dict[Route, tuple[int, ...]] = {
    ("GET", ORG): (200, 200, 200, 404, 401, 200, 200, 200, 404),
    ("PATCH", ORG): (200, 200, 403, 404, 401, 200, 200, 403, 404),
    # Deleting the organization is done in person: no key does it.
    ("DELETE", ORG): (204, 403, 403, 404, 401, 403, 403, 403, 404),
    ("GET", f"{ORG}/members"): (200, 200, 200, 404, 401, 200, 200, 200, 404),
    ("PUT", f"{ORG}/members/{{user_id}}/role"): (200, 403, 403, 404, 401, 200, 403, 403, 404),
    ("DELETE", f"{ORG}/members/{{user_id}}"): (204, 204, 403, 404, 401, 204, 204, 403, 404),
    # The owner is the only one: the last owner cannot leave.
    ("POST", f"{ORG}/leave"): (409, 204, 204, 404, 401, 403, 403, 403, 404),
    ("POST", f"{ORG}/files"): (201, 201, 201, 404, 401, 201, 201, 201, 404),
    ("GET", f"{ORG}/files"): (200, 200, 200, 404, 401, 200, 200, 200, 404),
    ("GET", f"{ORG}/files/{{file_id}}"): (200, 200, 200, 404, 401, 200, 200, 200, 404),
    ("GET", f"{ORG}/files/{{file_id}}/download"): (200, 200, 200, 404, 401, 200, 200, 200, 404),
    # The file is the target's, a member's: the acting member may read it, not delete it.
    ("DELETE", f"{ORG}/files/{{file_id}}"): (204, 204, 403, 404, 401, 204, 204, 403, 404),
    # These two take a verified account, and say so to any key first.
    ("POST", f"{ORG}/invitations"): (201, 201, 403, 404, 401, 403, 403, 403, 403),
    ("GET", f"{ORG}/invitations"): (200, 200, 403, 404, 401, 200, 200, 403, 404),
    ("DELETE", f"{ORG}/invitations/{{invitation_id}}"): (
        204,
        204,
        403,
        404,
        401,
        204,
        204,
        403,
        404,
    ),
    ("POST", f"{ORG}/api-keys"): (201, 201, 403, 404, 401, 403, 403, 403, 403),
    ("GET", f"{ORG}/api-keys"): (200, 200, 403, 404, 401, 403, 403, 403, 404),
    ("DELETE", f"{ORG}/api-keys/{{key_id}}"): (204, 204, 403, 404, 401, 403, 403, 403, 404),
    # Read by owners and admins, and by their keys: a security tool collects it with one.
    ("GET", f"{ORG}/audit-events"): (200, 200, 403, 404, 401, 200, 200, 403, 404),
}

PATH_PARAMETERS: dict[str, Callable[[World], uuid.UUID]] = {
    "org_id": lambda world: world.organization,
    "user_id": lambda world: world.target.id,
    "file_id": lambda world: world.file_id,
    "invitation_id": lambda world: world.invitation_id,
    "key_id": lambda world: world.key_id,
}


def concrete(path: str, world: World) -> str:
    return re.sub(r"\{([^}]+)\}", lambda name: str(PATH_PARAMETERS[name[1]](world)), path)


async def call(client: AsyncClient, world: World, route: Route, actor: str) -> Response:
    method, path = route
    headers = bearer(world.tokens[actor]) if actor in world.tokens else {}
    request = ORG_REQUESTS.get(route, nothing)(world)
    return await client.request(method, concrete(path, world), headers=headers, **request)


def test_the_matrix_covers_every_route_of_an_organization(app: FastAPI) -> None:
    served = {route for route in operations(app) if route[1].startswith(ORG)}
    missing = sorted(served - set(ORG_MATRIX))
    gone = sorted(set(ORG_MATRIX) - served)
    where = "ORG_MATRIX in backend/tests/test_organizations.py"
    assert not missing, f"Add rows to {where} for {missing}: the statuses for {ACTORS}."
    assert not gone, f"Remove the rows of {gone} from {where}: the app does not serve them."
    assert {len(statuses) for statuses in ORG_MATRIX.values()} == {len(ACTORS)}


@pytest.mark.parametrize(
    "route", ORG_MATRIX, ids=[f"{method}-{path}" for method, path in ORG_MATRIX]
)
async def test_organization_matrix(
    app: FastAPI, client: AsyncClient, settings: Settings, route: Route
) -> None:
    wrong = await matrix_row(
        app,
        route[0],
        dict(zip(ACTORS, ORG_MATRIX[route], strict=True)),
        lambda: make_world(app, settings),
        lambda world, actor: call(client, world, route, actor),
    )
    assert not wrong, wrong


async def as_user(
    client: AsyncClient,
    app: FastAPI,
    settings: Settings,
    actor: User,
    method: str,
    path: str,
    **kwargs: Any,
) -> Response:
    token = await access_token(app, settings, actor.id)
    return await client.request(method, path, headers=bearer(token), **kwargs)


@dataclass
class Team:
    organization: uuid.UUID
    people: dict[str, User]

    def path(self, suffix: str = "") -> str:
        return f"/api/v1/organizations/{self.organization}{suffix}"


@pytest.fixture
async def team(app: FastAPI) -> Team:
    owner = await add_user(app, "owner@example.com")
    organization = await organization_of(app, owner)
    people = {"owner": owner}
    for name, role in (
        ("second owner", Role.OWNER),
        ("admin", Role.ADMIN),
        ("other admin", Role.ADMIN),
        ("member", Role.MEMBER),
        ("other member", Role.MEMBER),
    ):
        people[name] = await add_user(app, f"{name.replace(' ', '-')}@example.com")
        await join(app, organization, people[name], role)
    return Team(organization, people)


async def role_in(app: FastAPI, organization: uuid.UUID, user: User) -> Role | None:
    async with app.state.sessionmaker() as session:
        role: Role | None = await session.scalar(
            select(Membership.role).where(
                Membership.organization_id == organization, Membership.user_id == user.id
            )
        )
    return role


async def set_role(
    client: AsyncClient,
    app: FastAPI,
    settings: Settings,
    team: Team,
    actor: str,
    target: str,
    role: Role,
) -> int:
    path = team.path(f"/members/{team.people[target].id}/role")
    response = await as_user(
        client, app, settings, team.people[actor], "PUT", path, json={"role": role}
    )
    return response.status_code


# Who may set whom to which role: only owners change roles, never their own.
ROLE_CHANGES: list[tuple[str, str, Role, int]] = [
    ("owner", "member", Role.ADMIN, 200),
    ("owner", "admin", Role.MEMBER, 200),
    ("owner", "member", Role.OWNER, 200),
    ("owner", "second owner", Role.ADMIN, 200),
    ("owner", "owner", Role.MEMBER, 403),
    ("admin", "member", Role.ADMIN, 403),
    ("admin", "member", Role.OWNER, 403),
    ("admin", "other admin", Role.MEMBER, 403),
    ("admin", "admin", Role.OWNER, 403),
    ("member", "other member", Role.ADMIN, 403),
    ("member", "member", Role.ADMIN, 403),
]


@pytest.mark.parametrize(
    ("actor", "target", "role", "expected"),
    ROLE_CHANGES,
    ids=[f"{actor}-sets-{target}-{role.value}" for actor, target, role, _ in ROLE_CHANGES],
)
async def test_who_changes_whose_role(
    app: FastAPI,
    client: AsyncClient,
    settings: Settings,
    team: Team,
    actor: str,
    target: str,
    role: Role,
    expected: int,
) -> None:
    before = await role_in(app, team.organization, team.people[target])
    assert await set_role(client, app, settings, team, actor, target, role) == expected
    after = await role_in(app, team.organization, team.people[target])
    assert after == (role if expected == 200 else before)


# Who may remove whom: owners anyone but themselves, admins members only.
REMOVALS: list[tuple[str, str, int]] = [
    ("owner", "second owner", 204),
    ("owner", "admin", 204),
    ("owner", "member", 204),
    ("owner", "owner", 403),
    ("admin", "member", 204),
    ("admin", "other admin", 403),
    ("admin", "owner", 403),
    ("member", "other member", 403),
]


@pytest.mark.parametrize(
    ("actor", "target", "expected"),
    REMOVALS,
    ids=[f"{actor}-removes-{target}" for actor, target, _ in REMOVALS],
)
async def test_who_removes_whom(
    app: FastAPI,
    client: AsyncClient,
    settings: Settings,
    team: Team,
    actor: str,
    target: str,
    expected: int,
) -> None:
    path = team.path(f"/members/{team.people[target].id}")
    response = await as_user(client, app, settings, team.people[actor], "DELETE", path)
    assert response.status_code == expected, response.text
    remaining = await role_in(app, team.organization, team.people[target])
    assert (remaining is None) == (expected == 204)


async def owners(app: FastAPI, organization: uuid.UUID) -> int:
    async with app.state.sessionmaker() as session:
        query = select(func.count()).where(
            Membership.organization_id == organization, Membership.role == Role.OWNER
        )
        return await session.scalar(query) or 0


async def test_the_last_owner_can_neither_leave_nor_be_removed(
    app: FastAPI, client: AsyncClient, settings: Settings, team: Team
) -> None:
    owner, second = team.people["owner"], team.people["second owner"]
    leave = await as_user(client, app, settings, second, "POST", team.path("/leave"))
    assert leave.status_code == 204
    refused = await as_user(client, app, settings, owner, "POST", team.path("/leave"))
    assert refused.status_code == 409
    assert "last owner" in refused.json()["error"]["message"]
    assert await owners(app, team.organization) == 1


@pytest.mark.parametrize("action", ["demote", "remove"])
async def test_two_owners_acting_on_each_other_at_once_leave_one_owner(
    app: FastAPI, client: AsyncClient, settings: Settings, team: Team, action: str
) -> None:
    async def act(actor: str, target: str) -> int:
        person = team.people[target]
        if action == "demote":
            return await set_role(client, app, settings, team, actor, target, Role.MEMBER)
        path = team.path(f"/members/{person.id}")
        return (
            await as_user(client, app, settings, team.people[actor], "DELETE", path)
        ).status_code

    for _ in range(5):
        statuses = await asyncio.gather(act("owner", "second owner"), act("second owner", "owner"))
        assert sorted(statuses) in ([200, 403], [200, 409], [204, 403], [204, 404], [204, 409])
        assert await owners(app, team.organization) == 1
        # Make the demoted or removed one an owner again for the next round.
        owner_role = await role_in(app, team.organization, team.people["owner"])
        survivor = "owner" if owner_role is Role.OWNER else "second owner"
        other = "second owner" if survivor == "owner" else "owner"
        if await role_in(app, team.organization, team.people[other]) is None:
            await join(app, team.organization, team.people[other], Role.OWNER)
        else:
            assert await set_role(client, app, settings, team, survivor, other, Role.OWNER) == 200


async def test_every_owner_leaving_at_once_leaves_one(
    app: FastAPI, client: AsyncClient, settings: Settings, team: Team
) -> None:
    for name in ("admin", "member"):
        assert await set_role(client, app, settings, team, "owner", name, Role.OWNER) == 200
    leavers = [team.people[name] for name in ("owner", "second owner", "admin", "member")]
    statuses = await asyncio.gather(
        *(as_user(client, app, settings, person, "POST", team.path("/leave")) for person in leavers)
    )
    assert sorted(response.status_code for response in statuses) == [204, 204, 204, 409]
    assert await owners(app, team.organization) == 1


async def test_a_new_account_gets_an_organization_it_owns(client: AsyncClient) -> None:
    await register(client, "grace@example.com")
    tokens = (
        await client.post(
            "/api/v1/auth/login",
            data={"username": "grace@example.com", "password": "correct horse battery staple"},
        )
    ).json()
    listing = await client.get("/api/v1/organizations", headers=bearer(tokens["access_token"]))
    assert listing.status_code == 200
    (personal,) = listing.json()["items"]
    assert personal["role"] == "owner"
    assert personal["name"] == "grace's organization"


async def test_creating_renaming_and_deleting_an_organization(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    ada = await add_user(app, "ada@example.com")
    headers = bearer(await access_token(app, settings, ada.id))
    created = await client.post(
        "/api/v1/organizations", json={"name": "  Analytical  "}, headers=headers
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["name"], body["role"]) == ("Analytical", "owner")
    path = f"/api/v1/organizations/{body['id']}"
    renamed = await client.patch(path, json={"name": "Engines Ltd"}, headers=headers)
    assert renamed.json()["name"] == "Engines Ltd"
    file_id = await store_file(app, uuid.UUID(body["id"]), ada)
    assert (await client.delete(path, headers=headers)).status_code == 204
    assert (await client.get(path, headers=headers)).status_code == 404
    async with app.state.sessionmaker() as session:
        assert await session.get(File, file_id) is None
        assert await session.get(Organization, uuid.UUID(body["id"])) is None
    listing = await client.get("/api/v1/organizations", headers=headers)
    assert [item["name"] for item in listing.json()["items"]] == ["ada's organization"]


@pytest.mark.parametrize("name", ["", "   ", "a" * 121, "line\nbreak", "nul\x00", "tab\there"])
async def test_a_bad_organization_name_is_a_422(
    app: FastAPI, client: AsyncClient, settings: Settings, name: str
) -> None:
    ada = await add_user(app, "ada@example.com")
    headers = bearer(await access_token(app, settings, ada.id))
    created = await client.post("/api/v1/organizations", json={"name": name}, headers=headers)
    assert created.status_code == 422, created.text
    assert created.json()["error"]["details"][0]["field"] == "body.name"


async def test_creating_an_organization_needs_a_verified_address(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    new = await add_user(app, "new@example.com", verified=False)
    headers = bearer(await access_token(app, settings, new.id))
    created = await client.post("/api/v1/organizations", json={"name": "Acme"}, headers=headers)
    assert created.status_code == 403


async def test_an_organization_id_that_is_not_one_is_a_422_and_an_unknown_one_a_404(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    ada = await add_user(app, "ada@example.com")
    headers = bearer(await access_token(app, settings, ada.id))
    assert (await client.get("/api/v1/organizations/nope", headers=headers)).status_code == 422
    unknown = await client.get(f"/api/v1/organizations/{uuid.uuid4()}", headers=headers)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "No such organization."


async def test_a_removed_member_loses_access_on_the_next_request(
    app: FastAPI, client: AsyncClient, settings: Settings, team: Team
) -> None:
    member = team.people["member"]
    token = bearer(await access_token(app, settings, member.id))
    assert (await client.get(team.path("/files"), headers=token)).status_code == 200
    path = team.path(f"/members/{member.id}")
    removed = await as_user(client, app, settings, team.people["admin"], "DELETE", path)
    assert removed.status_code == 204
    assert (await client.get(team.path("/files"), headers=token)).status_code == 404
    assert (await client.get(team.path(), headers=token)).status_code == 404


async def test_roles_in_the_organization_come_from_the_database(
    app: FastAPI, client: AsyncClient, settings: Settings, team: Team
) -> None:
    member = team.people["member"]
    token = bearer(await access_token(app, settings, member.id))
    rename = {"name": "Renamed"}
    assert (await client.patch(team.path(), json=rename, headers=token)).status_code == 403
    assert await set_role(client, app, settings, team, "owner", "member", Role.ADMIN) == 200
    assert (await client.patch(team.path(), json=rename, headers=token)).status_code == 200


# Whether one may delete a file of the organization another member uploaded, by (the
# actor's role, the uploader's role): the rule for accounts (rbac.manages). Every
# member reads every file of the organization and deletes their own.
FILE_DELETION: dict[tuple[Role, Role], bool] = {
    (Role.OWNER, Role.OWNER): True,
    (Role.OWNER, Role.ADMIN): True,
    (Role.OWNER, Role.MEMBER): True,
    (Role.ADMIN, Role.OWNER): False,
    (Role.ADMIN, Role.ADMIN): False,
    (Role.ADMIN, Role.MEMBER): True,
    (Role.MEMBER, Role.OWNER): False,
    (Role.MEMBER, Role.ADMIN): False,
    (Role.MEMBER, Role.MEMBER): False,
}


@pytest.mark.parametrize(
    ("actor_role", "uploader_role"),
    list(FILE_DELETION),
    ids=[f"{actor.value}-on-{uploader.value}s-file" for actor, uploader in FILE_DELETION],
)
async def test_who_deletes_whose_file(
    app: FastAPI, client: AsyncClient, settings: Settings, actor_role: Role, uploader_role: Role
) -> None:
    founder = await add_user(app, "founder@example.com")
    organization = await organization_of(app, founder)
    actor = await add_user(app, "actor@example.com")
    uploader = await add_user(app, "uploader@example.com")
    await join(app, organization, actor, actor_role)
    await join(app, organization, uploader, uploader_role)
    file_id = await store_file(app, organization, uploader)
    path = f"/api/v1/organizations/{organization}/files/{file_id}"
    assert (await as_user(client, app, settings, actor, "GET", path)).status_code == 200
    download = await as_user(client, app, settings, actor, "GET", f"{path}/download")
    assert download.status_code == 200
    allowed = FILE_DELETION[actor_role, uploader_role]
    deleted = await as_user(client, app, settings, actor, "DELETE", path)
    assert deleted.status_code == (204 if allowed else 403)
    own = await as_user(client, app, settings, uploader, "DELETE", path)
    assert own.status_code == (404 if allowed else 204)


async def test_a_file_id_of_another_organization_is_a_404_in_ones_own(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    ada = await add_user(app, "ada@example.com")
    bob = await add_user(app, "bob@example.com")
    file_id = await store_file(app, await organization_of(app, ada), ada)
    bobs = f"/api/v1/organizations/{await organization_of(app, bob)}/files/{file_id}"
    for method in ("GET", "DELETE"):
        assert (await as_user(client, app, settings, bob, method, bobs)).status_code == 404
    assert (await as_user(client, app, settings, bob, "GET", f"{bobs}/download")).status_code == 404


async def test_deleting_an_account_deletes_the_organizations_it_alone_belongs_to(
    app: FastAPI, client: AsyncClient, settings: Settings, team: Team
) -> None:
    platform_owner = await add_user(app, "root@example.com", Role.OWNER)
    member = team.people["member"]
    personal = await organization_of(app, member)
    path = f"/api/v1/users/{member.id}"
    deleted = await as_user(client, app, settings, platform_owner, "DELETE", path)
    assert deleted.status_code == 204
    async with app.state.sessionmaker() as session:
        assert await session.get(Organization, personal) is None
        assert await session.get(Organization, team.organization) is not None


async def test_a_deleted_accounts_uploads_stay_in_the_shared_organization(
    app: FastAPI, client: AsyncClient, settings: Settings, team: Team
) -> None:
    platform_owner = await add_user(app, "root@example.com", Role.OWNER)
    member = team.people["member"]
    file_id = await store_file(app, team.organization, member)
    path = f"/api/v1/users/{member.id}"
    assert (await as_user(client, app, settings, platform_owner, "DELETE", path)).status_code == 204
    file = await as_user(
        client, app, settings, team.people["owner"], "GET", team.path(f"/files/{file_id}")
    )
    assert file.status_code == 200
    assert file.json()["owner_id"] is None


async def test_an_upload_whose_uploader_left_meanwhile_is_discarded(
    app: FastAPI, client: AsyncClient, settings: Settings, team: Team
) -> None:
    member = team.people["member"]
    headers = bearer(await access_token(app, settings, member.id))
    before = stored_files(settings)

    async def body() -> AsyncIterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        yield b"Content-Type: text/plain\r\n\r\nminutes of the meeting\n"
        # The member is removed while the upload streams in.
        async with app.state.sessionmaker.begin() as session:
            await session.delete(await session.get_one(Membership, (team.organization, member.id)))
        yield b"\r\n--b--\r\n"

    response = await client.post(
        team.path("/files"),
        content=body(),
        headers={**headers, "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code == 404, response.text
    assert "discarded" in response.json()["error"]["message"]
    assert stored_files(settings) == before
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(File)) == 0


async def test_the_last_owner_of_a_shared_organization_cannot_be_deleted(
    app: FastAPI, client: AsyncClient, settings: Settings, team: Team
) -> None:
    platform_owner = await add_user(app, "root@example.com", Role.OWNER)
    second = team.people["second owner"]
    assert (
        await as_user(client, app, settings, second, "POST", team.path("/leave"))
    ).status_code == 204
    path = f"/api/v1/users/{team.people['owner'].id}"
    refused = await as_user(client, app, settings, platform_owner, "DELETE", path)
    assert refused.status_code == 409
    assert "last owner of organization" in refused.json()["error"]["message"]


async def test_members_are_listed_in_the_order_they_joined(
    app: FastAPI, client: AsyncClient, settings: Settings, team: Team
) -> None:
    response = await as_user(
        client, app, settings, team.people["member"], "GET", team.path("/members")
    )
    body = response.json()
    assert body["total"] == len(team.people)
    assert [item["email"] for item in body["items"]] == [
        person.email for person in team.people.values()
    ]
    assert body["items"][0]["role"] == "owner"


async def test_deleting_an_organization_removes_its_objects(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    ada = await add_user(app, "ada@example.com")
    organization = await organization_of(app, ada)
    before = stored_files(settings)
    for _ in range(3):
        await store_file(app, organization, ada)
    assert len(stored_files(settings) - before) == 3
    path = f"/api/v1/organizations/{organization}"
    assert (await as_user(client, app, settings, ada, "DELETE", path)).status_code == 204
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(File)) == 0
    # Without Redis the removal job ran after the response, in the API process.
    assert stored_files(settings) - before == set()


async def test_a_large_organizations_objects_go_in_several_jobs(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = await add_user(app, "ada@example.com")
    organization = await organization_of(app, ada)
    monkeypatch.setattr(file_service, "KEYS_PER_JOB", 2)
    for _ in range(5):
        await store_file(app, organization, ada)
    queued: list[JobCall] = []

    class Recorder:
        async def enqueue(self, call: JobCall) -> None:
            queued.append(call)

    async with app.state.sessionmaker() as session:
        await file_service.remove_objects_of(session, cast(Jobs, Recorder()), organization)
    assert [len(call.args[0]) for call in queued] == [2, 2, 1]
    keys = {key for call in queued for key in call.args[0]}
    async with app.state.sessionmaker() as session:
        assert keys == set(await session.scalars(select(File.object_key)))
