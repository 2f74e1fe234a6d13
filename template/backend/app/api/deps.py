"""Request dependencies, each named once as an `Annotated` alias so that a route reads
as its signature: `async def read_me(user: CurrentUser) -> UserOut`.

Routes are guarded by role with `require_roles` (the roles and who manages whom are in
app/core/rbac.py):

    @router.get("/reports", dependencies=[Depends(require_roles(Role.ADMIN, Role.OWNER))])

or, to use the user in the route:

    AdminUser = Annotated[User, Depends(require_roles(Role.ADMIN, Role.OWNER))]

Routes under /organizations/{org_id} are guarded by the caller's role in that
organization with `require_org_roles`, or its aliases `OrgMember`, `OrgManager` (owners
and admins) and `OrgOwner`; these also take the organization's API keys, with the key's
role. `MemberInPerson`, `ManagerInPerson` and `OwnerInPerson` take signed-in users only.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import BackgroundTasks, Depends, Path, Query, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import as_utc
from app.core.config import Settings
from app.core.db import session_scope
from app.core.errors import AppError, DatabaseUnavailableError, raises
from app.core.queue import Jobs, QueueUnavailableError
from app.core.rate_limit import RateLimitedError, Throttle
from app.core.rbac import Role
from app.core.request_context import identify
from app.core.security import InvalidTokenError, decode_access_token, is_api_key
from app.core.storage import Storage, StorageUnavailableError
from app.models import OrgAccess, User
from app.schemas.common import Paging
from app.services import api_key_service, organization_service, user_service

logger = logging.getLogger("app.auth")

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/login", auto_error=False)


class NotAuthenticatedError(AppError):
    """No access token, or one that is invalid, expired or whose login has ended."""

    status_code = 401
    header_names = ("WWW-Authenticate",)

    def __init__(self) -> None:
        super().__init__("Not authenticated", headers={"WWW-Authenticate": "Bearer"})


class UnverifiedError(AppError):
    """The route needs a verified email address."""

    status_code = 403

    def __init__(self) -> None:
        super().__init__("Verify your email address first (POST /api/v1/auth/request-verify).")


class RoleRequiredError(AppError):
    """The user's role does not allow the action."""

    status_code = 403

    def __init__(self) -> None:
        super().__init__("Your role does not allow this action.")


class StorageDisabledError(StorageUnavailableError):
    """File storage is turned off (STORAGE_BACKEND=none)."""

    public_message = "File storage is turned off (STORAGE_BACKEND=none)."


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@raises(RateLimitedError)
async def get_throttle(request: Request) -> Throttle:
    throttle: Throttle = request.app.state.throttle
    return throttle


# Requests that only read: on PostgreSQL their statements run without a transaction,
# which saves the BEGIN and COMMIT round trips, and a write through them is refused.
READ_METHODS = frozenset({"GET", "HEAD"})


@raises(DatabaseUnavailableError)
async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessionmaker = request.app.state.sessionmaker
    if request.method in READ_METHODS:
        sessionmaker = request.app.state.read_sessionmaker or sessionmaker
    # `async with`, not `async for` over a generator: an error raised in the route is
    # thrown into this dependency, and must reach the rollback at once.
    async with session_scope(sessionmaker) as session:
        yield session


@raises(QueueUnavailableError)
async def get_jobs(
    request: Request,
    background: BackgroundTasks,
    session: Annotated[AsyncSession, Depends(get_session, scope="function")],
) -> Jobs:
    return Jobs(request.app.state.queue, background, session)


@raises(StorageUnavailableError)
async def get_storage(request: Request) -> Storage:
    storage: Storage | None = request.app.state.storage
    if storage is None:
        raise StorageDisabledError("STORAGE_BACKEND=none")
    return storage


SettingsDep = Annotated[Settings, Depends(get_settings)]
# scope="function": the session commits as the route returns, before the response is
# sent, so that a failed commit becomes the answer instead of following a success.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
ThrottleDep = Annotated[Throttle, Depends(get_throttle)]
JobsDep = Annotated[Jobs, Depends(get_jobs)]
StorageDep = Annotated[Storage, Depends(get_storage)]


class ApiKeyNotAcceptedError(AppError):
    """An API key on a route that needs a signed-in user."""

    status_code = 403

    def __init__(self) -> None:
        super().__init__(
            "An API key does not open this route: a key works only on its organization's"
            " routes under /api/v1/organizations/{org_id}, except those done in person"
            " (deleting the organization, leaving, inviting, managing API keys). Sign in"
            " instead."
        )


@raises(NotAuthenticatedError)
async def get_caller(
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> User | None:
    """The signed-in user of the request's access token, or None when the bearer
    credential is an API key (which only an organization's guard can judge, knowing the
    organization). Resolved once per request, whichever dependencies ask for it."""
    if token is None:
        raise NotAuthenticatedError
    if is_api_key(token):
        return None
    try:
        claims = decode_access_token(token, settings)
    except InvalidTokenError:
        raise NotAuthenticatedError from None
    # The user, with the role, is read from the database on every request, together
    # with the login the token belongs to, in one query: a deactivation, role change,
    # logout or password change takes effect at once, whatever the token says.
    user = await user_service.active_user_in_session(session, claims.user_id, claims.session_id)
    if user is None:
        raise NotAuthenticatedError
    cutoff = user.tokens_valid_after
    if cutoff is not None and claims.issued_at < as_utc(cutoff).timestamp():
        raise NotAuthenticatedError
    identify(user_id=user.id)
    return user


Caller = Annotated[User | None, Depends(get_caller)]


@raises(get_caller, ApiKeyNotAcceptedError)
async def get_current_user(caller: Caller) -> User:
    if caller is None:
        raise ApiKeyNotAcceptedError
    return caller


CurrentUser = Annotated[User, Depends(get_current_user)]


@raises(UnverifiedError)
async def get_verified_user(user: CurrentUser) -> User:
    if not user.is_verified:
        raise UnverifiedError
    return user


VerifiedUser = Annotated[User, Depends(get_verified_user)]


def require_roles(*roles: Role) -> Callable[[User], Awaitable[User]]:
    """A dependency that lets through authenticated users holding one of `roles`.

    The role is read from the database with the user on every request, never from the
    token, so a role change applies to the very next request.
    """
    allowed = frozenset(roles)

    @raises(RoleRequiredError)
    async def dependency(user: CurrentUser) -> User:
        if user.role not in allowed:
            raise RoleRequiredError
        return user

    return dependency


async def record_api_key_use(request: Request) -> AsyncIterator[None]:
    """Once the response is sent, whatever it was, write the last use of the request's API
    key when its guard found it due (at most once a minute), in a transaction of its own."""
    try:
        yield
    finally:
        key_id = getattr(request.state, "api_key_used", None)
        if key_id is not None:
            await api_key_service.record_use(request.app.state.sessionmaker, key_id)


class OrgRoleRequiredError(AppError):
    """The user's role in the organization does not allow the action."""

    status_code = 403

    def __init__(self) -> None:
        super().__init__("Your role in this organization does not allow this action.")


@raises(get_caller, organization_service.access, api_key_service.access, RateLimitedError)
async def get_org_access(
    org_id: Annotated[uuid.UUID, Path()],
    caller: Caller,
    token: Annotated[str | None, Depends(oauth2_scheme)],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
    _: Annotated[None, Depends(record_api_key_use)],
) -> OrgAccess:
    """Who acts on the organization of the path, and with which role: the signed-in
    member, or the organization's API key (its budget spent here). Resolved once per
    request, however many guards of require_org_roles the route has."""
    if caller is not None:
        return await organization_service.access(session, caller, org_id)
    if token is None:  # refused by get_caller already
        raise NotAuthenticatedError
    access, key = await api_key_service.access(session, settings, token, org_id)
    identify(api_key_id=key.id)
    await throttle.hit(settings.API_KEY_LIMIT_PER_KEY, "api-key", str(key.id))
    if api_key_service.needs_use_recorded(key):
        request.state.api_key_used = key.id
    return access


def require_org_roles(*roles: Role, api_keys: bool = True) -> Callable[..., Awaitable[OrgAccess]]:
    """A dependency that resolves the organization named by the path's `org_id` and lets
    through its members holding one of `roles` (every member, when none is given), and
    the organization's API keys whose role is one of them, unless `api_keys` is False.

    Membership and role are read from the database on every request, as is the key with
    its creator's present role. It fails closed: to someone who is not a member, or a
    key of another organization, the organization does not exist (404, whether or not
    it does), and a member or key without the role gets 403.

        Admins = Annotated[OrgAccess, Depends(require_org_roles(Role.OWNER, Role.ADMIN))]
    """
    allowed = frozenset(roles or Role)
    refusals = ([] if api_keys else [ApiKeyNotAcceptedError]) + (
        [OrgRoleRequiredError] if roles else []
    )

    @raises(get_org_access, *refusals)
    async def dependency(access: Annotated[OrgAccess, Depends(get_org_access)]) -> OrgAccess:
        if access.api_key is not None and not api_keys:
            raise ApiKeyNotAcceptedError
        if access.role not in allowed:
            raise OrgRoleRequiredError
        return access

    return dependency


OrgMember = Annotated[OrgAccess, Depends(require_org_roles())]


@raises(UnverifiedError)
async def get_verified_member(member: OrgMember) -> OrgAccess:
    """A member whose email address is verified: for a key, its creator's."""
    if not member.user.is_verified:
        raise UnverifiedError
    return member


VerifiedOrgMember = Annotated[OrgAccess, Depends(get_verified_member)]
OrgManager = Annotated[OrgAccess, Depends(require_org_roles(Role.OWNER, Role.ADMIN))]
OrgOwner = Annotated[OrgAccess, Depends(require_org_roles(Role.OWNER))]
# For what is done in person, which no API key may do.
MemberInPerson = Annotated[OrgAccess, Depends(require_org_roles(api_keys=False))]
ManagerInPerson = Annotated[
    OrgAccess, Depends(require_org_roles(Role.OWNER, Role.ADMIN, api_keys=False))
]
OwnerInPerson = Annotated[OrgAccess, Depends(require_org_roles(Role.OWNER, api_keys=False))]


# OFFSET is a 64-bit integer in PostgreSQL and SQLite: a larger one is refused with a 422
# here rather than by the database with an error.
MAX_OFFSET = 2**63 - 1
MAX_LIMIT = 100


async def get_paging(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="How many items")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="How many to skip")] = 0,
) -> Paging:
    return Paging(limit=limit, offset=offset)


PagingDep = Annotated[Paging, Depends(get_paging)]


def client_address(request: Request) -> str:
    # The address ClientAddressMiddleware (app/core/proxy.py) decided, from the
    # connection or from what the platform's own proxy says; never from a header the
    # client can write.
    return request.client.host if request.client else "unknown"
