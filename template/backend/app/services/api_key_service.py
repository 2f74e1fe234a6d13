"""API keys: creating, listing and revoking them, and finding the access one gives.

The rules:
- owners and admins create keys, each with a role no higher than their own, and only
  in person (a key cannot make keys);
- a key acts in its organization only, for its creator, with the lower of its own role
  and the creator's present one: demoting the creator demotes the key, and once the
  creator is no member (left, removed, account deleted or deactivated) the key opens
  nothing; leaving or being removed deletes the member's keys of that organization;
- owners revoke any key, admins those of members and their own; a revoked key is
  deleted, so the next request with it is refused;
- a key may expire; an expired key is refused.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import as_utc, utcnow
from app.core.config import Settings
from app.core.db import session_scope
from app.core.errors import AppError, NotFoundError, raises
from app.core.rbac import RANK, Role, lower, manages
from app.core.security import API_KEY_MAX_LENGTH, api_key_digest, new_api_key
from app.models import ApiKey, AuditType, Membership, OrgAccess, Organization, User
from app.models.audit import TargetType
from app.services import audit_service, organization_lock
from app.services.organization_lock import NO_SUCH_ORGANIZATION

logger = logging.getLogger("app.api_keys")

# last_used_at is written when it is older than this, so that a busy key costs a write a
# minute rather than one per request.
USE_RECORD_SECONDS = 60
NO_SUCH_KEY = "No such API key in this organization."


class ApiKeyPolicyError(AppError):
    """A key the actor's role does not allow to create or revoke."""

    status_code = 403


class InvalidApiKeyError(AppError):
    """The key is unknown, revoked or expired, or its creator holds no role to lend it."""

    status_code = 401
    header_names = ("WWW-Authenticate",)

    def __init__(self) -> None:
        super().__init__(
            "This API key is not valid: it is unknown, revoked or expired, or its creator is"
            " no longer a member of its organization.",
            headers={"WWW-Authenticate": "Bearer"},
        )


@raises(NotFoundError, ApiKeyPolicyError)
async def create(
    session: AsyncSession,
    settings: Settings,
    creator: OrgAccess,
    *,
    name: str,
    role: Role,
    expires_at: datetime | None,
) -> tuple[ApiKey, str]:
    """A new key of the creator's organization, and its secret, which nothing keeps."""
    if creator.api_key is not None:
        raise ApiKeyPolicyError("An API key cannot create API keys; sign in to create one.")
    if RANK[role] < RANK[creator.role]:
        raise ApiKeyPolicyError(
            f"A key's role can be at most your own role in the organization ({creator.role})."
        )
    await organization_lock.hold(session, creator.organization.id)
    secret, prefix = new_api_key()
    key = ApiKey(
        organization_id=creator.organization.id,
        name=name,
        role=role,
        prefix=prefix,
        secret_hash=api_key_digest(secret, settings),
        created_by=creator.user.id,
        expires_at=expires_at,
    )
    session.add(key)
    await session.flush()
    audit_service.record(
        session,
        AuditType.API_KEY_CREATED,
        creator,
        target=(TargetType.API_KEY, key.id),
        details={"name": name, "prefix": prefix, "role": role.value},
    )
    logger.info(
        "API key %s (%s) of organization %s created by user %s with role %s",
        key.id,
        prefix,
        creator.organization.id,
        creator.user.id,
        role.value,
    )
    return key, secret


async def list_keys(
    session: AsyncSession, organization: Organization, limit: int, offset: int
) -> tuple[Sequence[ApiKey], int]:
    """A page of the organization's keys, newest first."""
    keys = select(ApiKey).where(ApiKey.organization_id == organization.id)
    rows = await session.scalars(
        keys.order_by(ApiKey.created_at.desc(), ApiKey.id).limit(limit).offset(offset)
    )
    total = await session.scalar(select(func.count()).select_from(keys.subquery()))
    return rows.all(), total or 0


@raises(NotFoundError, ApiKeyPolicyError)
async def revoke(session: AsyncSession, actor: OrgAccess, key_id: uuid.UUID) -> ApiKey:
    key = await session.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.organization_id == actor.organization.id)
    )
    if key is None:
        raise NotFoundError(NO_SUCH_KEY)
    if key.created_by != actor.user.id and not manages(actor.role, key.role):
        raise ApiKeyPolicyError("Admins revoke keys of members and their own only; ask an owner.")
    await session.delete(key)
    audit_service.record(
        session,
        AuditType.API_KEY_REVOKED,
        actor,
        target=(TargetType.API_KEY, key.id),
        details={"name": key.name, "prefix": key.prefix, "role": key.role.value},
    )
    await session.flush()
    logger.info("API key %s (%s) revoked by %s", key.id, key.prefix, actor.actor)
    return key


async def delete_keys_of(
    session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID
) -> int:
    """Delete the keys `user_id` made in the organization, as the member leaves it; how
    many there were."""
    result = await session.execute(
        delete(ApiKey).where(
            ApiKey.organization_id == organization_id, ApiKey.created_by == user_id
        )
    )
    return cast("CursorResult[Any]", result).rowcount


@raises(InvalidApiKeyError, NotFoundError)
async def access(
    session: AsyncSession, settings: Settings, secret: str, organization_id: uuid.UUID
) -> tuple[OrgAccess, ApiKey]:
    """The access `secret` gives to the organization, and the key, read from the database
    in one query:
    InvalidApiKeyError for a key that opens nothing, NotFoundError for a valid key of
    another organization (to it, this one does not exist)."""
    if len(secret) > API_KEY_MAX_LENGTH:
        raise InvalidApiKeyError
    found = (
        await session.execute(
            select(ApiKey, Organization, Membership.role, User)
            .join(Organization, Organization.id == ApiKey.organization_id)
            .join(
                Membership,
                (Membership.organization_id == ApiKey.organization_id)
                & (Membership.user_id == ApiKey.created_by),
            )
            .join(User, User.id == ApiKey.created_by)
            .where(ApiKey.secret_hash == api_key_digest(secret, settings), User.is_active)
        )
    ).one_or_none()
    if found is None:
        raise InvalidApiKeyError
    key, organization, creator_role, creator = found
    if key.expires_at is not None and as_utc(key.expires_at) <= utcnow():
        raise InvalidApiKeyError
    if organization.id != organization_id:
        raise NotFoundError(NO_SUCH_ORGANIZATION)
    return OrgAccess(organization, lower(key.role, creator_role), creator, key), key


def needs_use_recorded(key: ApiKey) -> bool:
    last = key.last_used_at
    return last is None or as_utc(last) < utcnow() - timedelta(seconds=USE_RECORD_SECONDS)


async def record_use(sessionmaker: async_sessionmaker[AsyncSession], key_id: uuid.UUID) -> None:
    """Write the key's last_used_at, in a transaction of its own, after the response: at
    most once a minute, whichever of the key's concurrent requests comes first."""
    now = utcnow()
    try:
        async with session_scope(sessionmaker) as session:
            # The first use, whichever of concurrent first requests gets here first,
            # is an audit event.
            first = (
                await session.execute(
                    update(ApiKey)
                    .where(ApiKey.id == key_id, ApiKey.last_used_at.is_(None))
                    .values(last_used_at=now)
                    .returning(ApiKey.organization_id, ApiKey.created_by, ApiKey.prefix)
                )
            ).one_or_none()
            if first is not None:
                organization_id, created_by, prefix = first
                audit_service.record(
                    session,
                    AuditType.API_KEY_FIRST_USED,
                    created_by,
                    organization_id=organization_id,
                    target=(TargetType.API_KEY, key_id),
                    details={"prefix": prefix},
                    api_key_id=key_id,
                )
                return
            await session.execute(
                update(ApiKey)
                .where(
                    ApiKey.id == key_id,
                    ApiKey.last_used_at < now - timedelta(seconds=USE_RECORD_SECONDS),
                )
                .values(last_used_at=now)
            )
    except Exception as exc:  # noqa: BLE001 - the driver's own errors too, as the database goes
        # The request was answered already; the next one records the use.
        logger.warning("Could not record the use of API key %s: %s", key_id, exc)
