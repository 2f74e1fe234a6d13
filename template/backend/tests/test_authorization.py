"""Who may call what: deny by default, the role rules, and the authorization matrix."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.rbac import Role
from app.models import File, TokenPurpose, User
from app.services import token_service, user_service
from tests.support import PASSWORD, access_token, add_user, bearer

# Routes anyone may call. Every other route must demand authentication: a new route
# that forgets to is caught by the first test below.
PUBLIC_ROUTES = {
    ("GET", "/health"),
    ("GET", "/health/ready"),
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/request-verify"),
    ("POST", "/api/v1/auth/verify"),
    ("POST", "/api/v1/auth/request-reset"),
    ("POST", "/api/v1/auth/reset"),
}


def served_routes(app: FastAPI) -> set[tuple[str, str]]:
    # The OpenAPI document lists every route the app serves, however routers nest.
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }


async def test_every_route_requires_authentication_unless_public(
    app: FastAPI, client: AsyncClient
) -> None:
    private = served_routes(app) - PUBLIC_ROUTES
    assert private
    for method, path in sorted(private):
        concrete = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        response = await client.request(method, concrete, json={})
        assert response.status_code == 401, (method, path)


@dataclass
class World:
    """The accounts each matrix cell starts from, and ready-made credentials."""

    tokens: dict[str, str]
    target: User
    refresh_token: str
    verify_token: str
    reset_token: str
    file_id: uuid.UUID


async def make_world(app: FastAPI, settings: Settings) -> World:
    people = {
        role.value: await add_user(app, f"{role.value}@example.com", role)
        for role in (Role.OWNER, Role.ADMIN, Role.MEMBER)
    }
    target = await add_user(app, "target@example.com", verified=False)
    async with app.state.sessionmaker.begin() as session:
        family = await token_service.start_family(session, target.id, settings)
        one_time = {
            purpose: await token_service.issue_one_time_token(
                session, target.id, purpose, timedelta(minutes=5), email=target.email
            )
            for purpose in TokenPurpose
        }
    file_id = await store_file(app, target)
    return World(
        tokens={name: await access_token(app, settings, user.id) for name, user in people.items()},
        target=target,
        refresh_token=family.token,
        verify_token=one_time[TokenPurpose.VERIFY_EMAIL],
        reset_token=one_time[TokenPurpose.RESET_PASSWORD],
        file_id=file_id,
    )


async def store_file(app: FastAPI, owner: User) -> uuid.UUID:
    """A file of `owner`'s, in storage and in the database, as an upload leaves it."""
    content = b"quarterly numbers\n"
    stored = File(
        owner_id=owner.id,
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


# How each route is called in the matrix: (method, path, request arguments).
RequestMaker = Callable[[World, str], dict[str, Any]]


def json_body(make: Callable[[World], dict[str, Any]]) -> RequestMaker:
    return lambda world, actor: {"json": make(world)}


def nothing(world: World, actor: str) -> dict[str, Any]:
    return {}


MATRIX_REQUESTS: dict[tuple[str, str], RequestMaker] = {
    ("GET", "/health"): nothing,
    ("GET", "/health/ready"): nothing,
    ("POST", "/api/v1/auth/register"): lambda world, actor: {
        "json": {"email": f"new-{actor}@example.com", "password": PASSWORD}
    },
    ("POST", "/api/v1/auth/login"): lambda world, actor: {
        "data": {"username": world.target.email, "password": PASSWORD}
    },
    ("POST", "/api/v1/auth/refresh"): json_body(lambda w: {"refresh_token": w.refresh_token}),
    ("POST", "/api/v1/auth/logout"): json_body(lambda w: {"refresh_token": w.refresh_token}),
    ("POST", "/api/v1/auth/request-verify"): json_body(lambda w: {"email": w.target.email}),
    ("POST", "/api/v1/auth/verify"): json_body(lambda w: {"token": w.verify_token}),
    ("POST", "/api/v1/auth/request-reset"): json_body(lambda w: {"email": w.target.email}),
    ("POST", "/api/v1/auth/reset"): json_body(
        lambda w: {"token": w.reset_token, "new_password": "a brand new passphrase"}
    ),
    ("POST", "/api/v1/auth/change-password"): json_body(
        lambda w: {"current_password": PASSWORD, "new_password": "a brand new passphrase"}
    ),
    ("GET", "/api/v1/users/me"): nothing,
    ("PATCH", "/api/v1/users/me"): json_body(lambda w: {"full_name": "Ada Lovelace"}),
    ("GET", "/api/v1/users"): nothing,
    ("GET", "/api/v1/users/{user_id}"): nothing,
    ("PUT", "/api/v1/users/{user_id}/role"): json_body(lambda w: {"role": "admin"}),
    ("POST", "/api/v1/users/{user_id}/deactivate"): nothing,
    ("POST", "/api/v1/users/{user_id}/activate"): nothing,
    ("DELETE", "/api/v1/users/{user_id}"): nothing,
    ("POST", "/api/v1/files"): lambda world, actor: {
        "files": {"file": ("notes.txt", b"meeting notes\n", "text/plain")}
    },
    ("GET", "/api/v1/files"): nothing,
    ("GET", "/api/v1/files/{file_id}"): nothing,
    ("GET", "/api/v1/files/{file_id}/download"): nothing,
    ("DELETE", "/api/v1/files/{file_id}"): nothing,
}

ACTORS = ("owner", "admin", "member", "anonymous")

# Expected status per actor, in the order of ACTORS, acting on a member's account and
# that member's file.
# Add a row for every new route; the completeness test below insists.
MATRIX: dict[tuple[str, str], tuple[int, int, int, int]] = {
    ("GET", "/health"): (200, 200, 200, 200),
    ("GET", "/health/ready"): (200, 200, 200, 200),
    ("POST", "/api/v1/auth/register"): (202, 202, 202, 202),
    ("POST", "/api/v1/auth/login"): (200, 200, 200, 200),
    ("POST", "/api/v1/auth/refresh"): (200, 200, 200, 200),
    ("POST", "/api/v1/auth/logout"): (204, 204, 204, 204),
    ("POST", "/api/v1/auth/request-verify"): (202, 202, 202, 202),
    ("POST", "/api/v1/auth/verify"): (204, 204, 204, 204),
    ("POST", "/api/v1/auth/request-reset"): (202, 202, 202, 202),
    ("POST", "/api/v1/auth/reset"): (204, 204, 204, 204),
    ("POST", "/api/v1/auth/change-password"): (200, 200, 200, 401),
    ("GET", "/api/v1/users/me"): (200, 200, 200, 401),
    ("PATCH", "/api/v1/users/me"): (200, 200, 200, 401),
    ("GET", "/api/v1/users"): (200, 200, 403, 401),
    ("GET", "/api/v1/users/{user_id}"): (200, 200, 403, 401),
    ("PUT", "/api/v1/users/{user_id}/role"): (200, 403, 403, 401),
    ("POST", "/api/v1/users/{user_id}/deactivate"): (200, 200, 403, 401),
    ("POST", "/api/v1/users/{user_id}/activate"): (200, 200, 403, 401),
    ("DELETE", "/api/v1/users/{user_id}"): (204, 204, 403, 401),
    # The file belongs to the member under management, not to the member acting: to
    # them it does not exist.
    ("POST", "/api/v1/files"): (201, 201, 201, 401),
    ("GET", "/api/v1/files"): (200, 200, 200, 401),
    ("GET", "/api/v1/files/{file_id}"): (200, 200, 404, 401),
    ("GET", "/api/v1/files/{file_id}/download"): (200, 200, 404, 401),
    ("DELETE", "/api/v1/files/{file_id}"): (204, 204, 404, 401),
}

CELLS = [
    (route, actor, statuses[index])
    for route, statuses in MATRIX.items()
    for index, actor in enumerate(ACTORS)
]


def test_the_matrix_covers_every_route(app: FastAPI) -> None:
    assert set(MATRIX) == served_routes(app)
    assert set(MATRIX_REQUESTS) == set(MATRIX)


@pytest.mark.parametrize(
    ("route", "actor", "expected"),
    CELLS,
    ids=[f"{actor}-{method}-{path}" for (method, path), actor, _ in CELLS],
)
async def test_authorization_matrix(
    app: FastAPI,
    client: AsyncClient,
    settings: Settings,
    route: tuple[str, str],
    actor: str,
    expected: int,
) -> None:
    world = await make_world(app, settings)
    method, path = route
    headers = bearer(world.tokens[actor]) if actor in world.tokens else {}
    response = await client.request(
        method,
        path.replace("{user_id}", str(world.target.id)).replace("{file_id}", str(world.file_id)),
        headers=headers,
        **MATRIX_REQUESTS[route](world, actor),
    )
    assert response.status_code == expected, response.text


# Whether one may act on someone else's file, by (the actor's role, the role of the
# file's owner): the rule for accounts (rbac.manages). Everyone acts on their own.
FILE_ACCESS: dict[tuple[Role, Role], bool] = {
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
    ("actor_role", "holder_role"),
    list(FILE_ACCESS),
    ids=[f"{actor.value}-on-{holder.value}s-file" for actor, holder in FILE_ACCESS],
)
async def test_who_may_act_on_whose_file(
    app: FastAPI, client: AsyncClient, settings: Settings, actor_role: Role, holder_role: Role
) -> None:
    actor = await add_user(app, "actor@example.com", actor_role)
    holder = await add_user(app, "holder@example.com", holder_role)
    path = f"/api/v1/files/{await store_file(app, holder)}"
    allowed = FILE_ACCESS[actor_role, holder_role]
    # A file one may not act on does not exist, whatever is asked of it.
    assert await call_as(client, app, settings, actor, "GET", path) == (200 if allowed else 404)
    download = await call_as(client, app, settings, actor, "GET", f"{path}/download")
    assert download == (200 if allowed else 404)
    assert await call_as(client, app, settings, actor, "DELETE", path) == (204 if allowed else 404)
    assert await call_as(client, app, settings, holder, "GET", path) == (404 if allowed else 200)


@pytest.mark.parametrize("role", list(Role))
async def test_everyone_acts_on_their_own_files(
    app: FastAPI, client: AsyncClient, settings: Settings, role: Role
) -> None:
    holder = await add_user(app, "holder@example.com", role)
    path = f"/api/v1/files/{await store_file(app, holder)}"
    assert await call_as(client, app, settings, holder, "GET", path) == 200
    assert await call_as(client, app, settings, holder, "GET", f"{path}/download") == 200
    assert await call_as(client, app, settings, holder, "DELETE", path) == 204
    assert await call_as(client, app, settings, holder, "GET", path) == 404


async def call_as(
    client: AsyncClient,
    app: FastAPI,
    settings: Settings,
    actor: User,
    method: str,
    path: str,
    **kwargs: Any,
) -> int:
    token = await access_token(app, settings, actor.id)
    response = await client.request(method, path, headers=bearer(token), **kwargs)
    return response.status_code


async def set_role(
    client: AsyncClient, app: FastAPI, settings: Settings, actor: User, target: User, role: Role
) -> int:
    return await call_as(
        client, app, settings, actor, "PUT", f"/api/v1/users/{target.id}/role", json={"role": role}
    )


@pytest.fixture
async def staff(app: FastAPI) -> dict[str, User]:
    return {
        "owner": await add_user(app, "owner@example.com", Role.OWNER),
        "admin": await add_user(app, "admin@example.com", Role.ADMIN),
        "other admin": await add_user(app, "other@example.com", Role.ADMIN),
        "member": await add_user(app, "member@example.com"),
    }


async def test_nobody_changes_their_own_role(
    app: FastAPI, client: AsyncClient, settings: Settings, staff: dict[str, User]
) -> None:
    owner, admin = staff["owner"], staff["admin"]
    assert await set_role(client, app, settings, owner, owner, Role.MEMBER) == 403
    assert await set_role(client, app, settings, admin, admin, Role.OWNER) == 403


async def test_only_an_owner_grants_or_revokes_admin(
    app: FastAPI, client: AsyncClient, settings: Settings, staff: dict[str, User]
) -> None:
    owner, admin, member = staff["owner"], staff["admin"], staff["member"]
    other_admin = staff["other admin"]
    assert await set_role(client, app, settings, admin, member, Role.ADMIN) == 403
    assert await set_role(client, app, settings, admin, other_admin, Role.MEMBER) == 403
    assert await set_role(client, app, settings, owner, member, Role.ADMIN) == 200
    assert await set_role(client, app, settings, owner, other_admin, Role.MEMBER) == 200


async def test_an_admin_cannot_grant_owner_or_touch_owners_and_admins(
    app: FastAPI, client: AsyncClient, settings: Settings, staff: dict[str, User]
) -> None:
    owner, admin, member = staff["owner"], staff["admin"], staff["member"]
    other_admin = staff["other admin"]
    assert await set_role(client, app, settings, admin, member, Role.OWNER) == 403
    for target in (owner, other_admin):
        for action in ("deactivate", "activate"):
            path = f"/api/v1/users/{target.id}/{action}"
            assert await call_as(client, app, settings, admin, "POST", path) == 403
        path = f"/api/v1/users/{target.id}"
        assert await call_as(client, app, settings, admin, "DELETE", path) == 403


async def test_role_and_status_are_not_self_service(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    member = await add_user(app, "member@example.com")
    path = "/api/v1/users/me"
    for body in ({"role": "owner"}, {"is_active": True}, {"is_verified": True}):
        assert await call_as(client, app, settings, member, "PATCH", path, json=body) == 422
    for action in ("deactivate", "activate"):
        path = f"/api/v1/users/{member.id}/{action}"
        assert await call_as(client, app, settings, member, "POST", path) == 403


async def test_owners_act_on_owners_but_not_on_themselves(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    first = await add_user(app, "first@example.com", Role.OWNER)
    second = await add_user(app, "second@example.com", Role.OWNER)
    for action in ("deactivate", "activate"):
        path = f"/api/v1/users/{first.id}/{action}"
        assert await call_as(client, app, settings, first, "POST", path) == 403
    assert await call_as(client, app, settings, first, "DELETE", f"/api/v1/users/{first.id}") == 403
    assert await set_role(client, app, settings, first, second, Role.ADMIN) == 200


async def active_owners(app: FastAPI) -> int:
    async with app.state.sessionmaker() as session:
        query = select(func.count()).where(User.role == Role.OWNER, User.is_active)
        return await session.scalar(query) or 0


LAST_OWNER_ACTIONS: dict[str, Callable[[AsyncSession, User, User], Awaitable[None]]] = {
    "demote": lambda session, actor, target: user_service.change_role(
        session, actor, target, Role.ADMIN
    ),
    "deactivate": lambda session, actor, target: user_service.set_active(
        session, actor, target, active=False
    ),
    "delete": user_service.delete_user,
}


@pytest.mark.parametrize("action", sorted(LAST_OWNER_ACTIONS))
async def test_the_last_owner_stays(app: FastAPI, action: str) -> None:
    # Through the API only the last owner could act on the last owner, which the
    # own-account rule forbids; the guard beneath it is what a race meets, when the
    # acting owner was deactivated a moment ago. This test is that moment.
    last = await add_user(app, "last@example.com", Role.OWNER)
    gone_meanwhile = await add_user(app, "former@example.com", Role.OWNER)
    async with app.state.sessionmaker() as session:
        target = await session.get_one(User, last.id)
        actor = await session.get_one(User, gone_meanwhile.id)
        actor.is_active = False
        await session.flush()
        with pytest.raises(user_service.LastOwnerError, match="last owner") as refused:
            await LAST_OWNER_ACTIONS[action](session, actor, target)
        assert refused.value.status_code == 409


async def test_two_owners_demoting_each_other_leave_one_owner(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    first = await add_user(app, "first@example.com", Role.OWNER)
    second = await add_user(app, "second@example.com", Role.OWNER)
    statuses = await asyncio.gather(
        set_role(client, app, settings, first, second, Role.MEMBER),
        set_role(client, app, settings, second, first, Role.MEMBER),
    )
    assert sorted(statuses) in ([200, 403], [200, 409])
    assert await active_owners(app) == 1


async def test_roles_come_from_the_database_not_the_token(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    owner = await add_user(app, "owner@example.com", Role.OWNER)
    member = await add_user(app, "member@example.com")
    token = await access_token(app, settings, member.id)
    assert "role" not in jwt.decode(token, options={"verify_signature": False})
    listing = await client.get("/api/v1/users", headers=bearer(token))
    assert listing.status_code == 403
    assert await set_role(client, app, settings, owner, member, Role.ADMIN) == 200
    # The same token, issued before the promotion, now carries the new role.
    listing = await client.get("/api/v1/users", headers=bearer(token))
    assert listing.status_code == 200
    assert await set_role(client, app, settings, owner, member, Role.MEMBER) == 200
    listing = await client.get("/api/v1/users", headers=bearer(token))
    assert listing.status_code == 403


async def test_managing_users_needs_a_verified_address(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    admin = await add_user(app, "admin@example.com", Role.ADMIN, verified=False)
    response = await client.get(
        "/api/v1/users", headers=bearer(await access_token(app, settings, admin.id))
    )
    assert response.status_code == 403
    assert "Verify your email" in response.json()["error"]["message"]


async def test_the_user_list_pages(app: FastAPI, client: AsyncClient, settings: Settings) -> None:
    admin = await add_user(app, "admin@example.com", Role.ADMIN)
    for number in range(4):
        await add_user(app, f"member{number}@example.com")
    token = await access_token(app, settings, admin.id)
    pages = [
        (await client.get(f"/api/v1/users?limit=2&offset={offset}", headers=bearer(token))).json()
        for offset in (0, 2, 4)
    ]
    assert [page["total"] for page in pages] == [5, 5, 5]
    emails = [user["email"] for page in pages for user in page["items"]]
    assert sorted(emails) == sorted({*emails})
    assert len(emails) == 5
    too_many = await client.get("/api/v1/users?limit=1000", headers=bearer(token))
    assert too_many.status_code == 422


async def test_deactivation_ends_the_users_sessions(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    admin = await add_user(app, "admin@example.com", Role.ADMIN)
    member = await add_user(app, "member@example.com")
    tokens = (
        await client.post(
            "/api/v1/auth/login", data={"username": member.email, "password": PASSWORD}
        )
    ).json()
    path = f"/api/v1/users/{member.id}/deactivate"
    assert await call_as(client, app, settings, admin, "POST", path) == 200
    me = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 401
    path = f"/api/v1/users/{member.id}/activate"
    assert await call_as(client, app, settings, admin, "POST", path) == 200
    # Reactivation does not bring the old login back.
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401


async def test_role_changes_are_logged(
    app: FastAPI, client: AsyncClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.auth")
    owner = await add_user(app, "owner@example.com", Role.OWNER)
    member = await add_user(app, "member@example.com")
    assert await set_role(client, app, settings, owner, member, Role.ADMIN) == 200
    assert (
        f"Role of user {member.id} changed from member to admin by user {owner.id}"
        in caplog.messages
    )


async def test_an_unknown_user_id_is_404(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    owner = await add_user(app, "owner@example.com", Role.OWNER)
    path = f"/api/v1/users/{uuid.uuid4()}"
    assert await call_as(client, app, settings, owner, "GET", path) == 404
    assert await call_as(client, app, settings, owner, "GET", "/api/v1/users/not-a-uuid") == 422
