"""Account changes that carry security rules: passwords, roles and deactivation.

The rules live here rather than in the routes so that the CLI and any future route
apply them the same way.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import to_millisecond, utcnow
from app.core.errors import AppError, NotFoundError, raises
from app.core.queue import Jobs
from app.core.rbac import Role, manages
from app.core.security import hash_password
from app.models import AuditType, RefreshTokenFamily, TokenPurpose, User
from app.models.audit import TargetType
from app.services import audit_service, organization_service, token_service

logger = logging.getLogger("app.auth")


class PolicyError(AppError):
    """An account change the rules forbid the actor."""

    status_code = 403


class LastOwnerError(PolicyError):
    """The state, not the actor, stands in the way: the last owner must stay one."""

    status_code = 409


async def create_member(
    session: AsyncSession, email: str, hashed_password: str, full_name: str | None
) -> User | None:
    """A new member account, or None when the address has one already. The insert runs
    in a savepoint, so a taken address leaves the request's transaction usable."""
    user = User(email=email, hashed_password=hashed_password, full_name=full_name)
    try:
        async with session.begin_nested():
            session.add(user)
    except IntegrityError:
        return None
    return user


async def active_user_in_session(
    session: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID
) -> User | None:
    """The user, when active and signed in through a login (refresh token family) that
    has not ended; one round trip."""
    query = (
        select(User)
        .join(RefreshTokenFamily, RefreshTokenFamily.user_id == User.id)
        .where(
            User.id == user_id,
            User.is_active,
            RefreshTokenFamily.id == session_id,
            RefreshTokenFamily.revoked_at.is_(None),
        )
    )
    return (await session.scalars(query)).one_or_none()


async def set_password(session: AsyncSession, user: User, new_password: str) -> None:
    """Store a new password and end every session of the user: refresh token families
    are revoked, access tokens issued until now stop working, and pending reset links
    are voided."""
    user.hashed_password = await hash_password(new_password)
    user.tokens_valid_after = to_millisecond(utcnow())
    await token_service.revoke_all_families(session, user.id)
    await token_service.void_one_time_tokens(session, user.id, TokenPurpose.RESET_PASSWORD)
    await session.flush()


async def _lock_active_owners(session: AsyncSession) -> set[uuid.UUID]:
    # FOR UPDATE makes two owners demoting each other at the same moment take turns on
    # PostgreSQL, so the second one sees the first one's change; SQLite serialises
    # writers by itself.
    rows = await session.scalars(
        select(User.id).where(User.role == Role.OWNER, User.is_active).with_for_update()
    )
    return set(rows)


async def _guard_last_owner(session: AsyncSession, target: User) -> None:
    if target.role is not Role.OWNER:
        return
    owners = await _lock_active_owners(session)
    if owners - {target.id}:
        return
    raise LastOwnerError(
        "This is the last owner; make another user owner before changing this account."
    )


def _check_authority(actor: User, target: User) -> None:
    if actor.id == target.id:
        raise PolicyError(
            "You cannot change your own role or status; another owner or admin has to."
        )
    if manages(actor.role, target.role):
        return
    raise PolicyError("Admins manage members only; ask an owner.")


@raises(PolicyError, LastOwnerError)
async def change_role(session: AsyncSession, actor: User, target: User, role: Role) -> None:
    if actor.id == target.id:
        raise PolicyError("You cannot change your own role; another owner has to.")
    # Granting or revoking admin, and granting owner, are an owner's decisions.
    if actor.role is not Role.OWNER:
        raise PolicyError("Only an owner changes roles.")
    if role is target.role:
        return
    if role is not Role.OWNER:
        await _guard_last_owner(session, target)
    previous = target.role
    target.role = role
    audit_service.record(
        session,
        AuditType.USER_ROLE_CHANGED,
        actor,
        target=(TargetType.USER, target.id),
        details={"from": previous.value, "to": role.value},
    )
    await session.flush()
    logger.info(
        "Role of user %s changed from %s to %s by user %s",
        target.id,
        previous.value,
        role.value,
        actor.id,
    )


@raises(PolicyError, LastOwnerError)
async def set_active(session: AsyncSession, actor: User, target: User, *, active: bool) -> None:
    _check_authority(actor, target)
    if target.is_active is active:
        return
    if not active:
        await _guard_last_owner(session, target)
        await token_service.revoke_all_families(session, target.id)
    target.is_active = active
    audit_service.record(
        session,
        AuditType.USER_ACTIVATED if active else AuditType.USER_DEACTIVATED,
        actor,
        target=(TargetType.USER, target.id),
    )
    await session.flush()
    logger.info(
        "User %s %s by user %s", target.id, "activated" if active else "deactivated", actor.id
    )


@raises(PolicyError, LastOwnerError, organization_service.release_user)
async def delete_user(session: AsyncSession, jobs: Jobs, actor: User, target: User) -> None:
    """Delete the account; its uploads stay in the organizations they belong to."""
    _check_authority(actor, target)
    await _guard_last_owner(session, target)
    await organization_service.release_user(session, jobs, actor, target)
    await session.delete(target)
    audit_service.record(
        session,
        AuditType.USER_DELETED,
        actor,
        target=(TargetType.USER, target.id),
        # The account is gone: the event says whose it was.
        details={"email": target.email},
    )
    await session.flush()
    logger.info("User %s deleted by user %s", target.id, actor.id)


@raises(NotFoundError)
async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFoundError("No such user.")
    return user


async def list_users(session: AsyncSession, limit: int, offset: int) -> tuple[Sequence[User], int]:
    """A page of every account, oldest first, and how many there are."""
    users = await session.scalars(
        select(User).order_by(User.created_at, User.id).limit(limit).offset(offset)
    )
    return users.all(), await count_users(session)


async def count_users(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(User)) or 0
