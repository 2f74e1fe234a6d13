"""Organizations: creating and deleting them, their members, and who may change what.

The rules, as strict as the platform's (services/user_service.py):
- owners manage everyone in the organization, admins manage members, members nobody;
- only owners change roles, so only owners grant or revoke admin or owner;
- nobody changes their own role or removes themselves (leaving is its own action);
- the last owner of an organization stays one. The owners' memberships are locked
  before any change that could remove one, so two owners demoting each other at the
  same moment take turns on PostgreSQL and the second finds that the first's change
  left them without authority, or the organization with one owner.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from app.core.errors import AppError, NotFoundError, raises
from app.core.queue import Jobs, QueueUnavailableError
from app.core.rbac import Role, manages
from app.models import AuditType, Membership, OrgAccess, Organization, User
from app.models.audit import TargetType
from app.models.organization import ORGANIZATION_NAME_MAX_LENGTH
from app.services import api_key_service, audit_service, file_service, organization_lock
from app.services.organization_lock import NO_SUCH_ORGANIZATION

logger = logging.getLogger("app.organizations")

NO_SUCH_MEMBER = "No such member of this organization."


class OrganizationPolicyError(AppError):
    """A change to an organization the actor's role in it does not allow."""

    status_code = 403


class LastOrganizationOwnerError(AppError):
    """The state, not the actor, stands in the way: an organization keeps an owner."""

    status_code = 409


def personal_name(user: User) -> str:
    """The name a new account's own organization starts with (migration 0004 named those
    of the accounts that existed before alike)."""
    who = user.full_name or user.email.split("@", 1)[0]
    return f"{who}'s organization"[:ORGANIZATION_NAME_MAX_LENGTH]


async def create(session: AsyncSession, founder: User, name: str) -> Organization:
    """A new organization, whose first owner is `founder`."""
    organization = Organization(name=name)
    session.add(organization)
    await session.flush()
    session.add(Membership(organization_id=organization.id, user_id=founder.id, role=Role.OWNER))
    audit_service.record(
        session,
        AuditType.ORGANIZATION_CREATED,
        founder,
        organization_id=organization.id,
        target=(TargetType.ORGANIZATION, organization.id),
        details={"name": name},
    )
    await session.flush()
    logger.info("Organization %s created by user %s", organization.id, founder.id)
    return organization


async def create_personal(session: AsyncSession, user: User) -> Organization:
    """The organization every new account starts with, so that it can upload at once."""
    return await create(session, user, personal_name(user))


@raises(NotFoundError)
async def access(session: AsyncSession, user: User, organization_id: uuid.UUID) -> OrgAccess:
    """The user's access to the organization, read from the database in one query;
    NotFoundError when the user is no member, as when there is no such organization."""
    found = (
        await session.execute(
            select(Organization, Membership.role)
            .join(Membership, Membership.organization_id == Organization.id)
            .where(Organization.id == organization_id, Membership.user_id == user.id)
        )
    ).one_or_none()
    if found is None:
        raise NotFoundError(NO_SUCH_ORGANIZATION)
    organization, role = found
    return OrgAccess(organization, role, user)


async def list_for_user(
    session: AsyncSession, user: User, limit: int, offset: int
) -> tuple[Sequence[tuple[Organization, Role]], int]:
    """A page of the user's organizations with the user's role in each, oldest first."""
    mine = (
        select(Organization, Membership.role)
        .join(Membership, Membership.organization_id == Organization.id)
        .where(Membership.user_id == user.id)
    )
    rows = await session.execute(
        mine.order_by(Organization.created_at, Organization.id).limit(limit).offset(offset)
    )
    total = await session.scalar(
        select(func.count()).select_from(Membership).where(Membership.user_id == user.id)
    )
    return [(organization, role) for organization, role in rows], total or 0


async def list_members(
    session: AsyncSession, organization: Organization, limit: int, offset: int
) -> tuple[Sequence[Membership], int]:
    """A page of the organization's memberships with their users, in the order they
    joined."""
    members = await session.scalars(
        select(Membership)
        .options(joinedload(Membership.user, innerjoin=True))
        .where(Membership.organization_id == organization.id)
        .order_by(Membership.created_at, Membership.user_id)
        .limit(limit)
        .offset(offset)
    )
    total = await session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.organization_id == organization.id)
    )
    return members.all(), total or 0


@raises(NotFoundError)
async def get_member(
    session: AsyncSession, organization: Organization, user_id: uuid.UUID
) -> Membership:
    """The membership of `user_id` in the organization, with its user."""
    membership = await session.scalar(
        select(Membership)
        .options(joinedload(Membership.user, innerjoin=True))
        .where(Membership.organization_id == organization.id, Membership.user_id == user_id)
        .execution_options(populate_existing=True)
    )
    if membership is None:
        raise NotFoundError(NO_SUCH_MEMBER)
    return membership


@raises(NotFoundError)
async def rename(session: AsyncSession, actor: OrgAccess, name: str) -> Organization:
    await organization_lock.hold(session, actor.organization.id)
    previous = actor.organization.name
    actor.organization.name = name
    audit_service.record(
        session,
        AuditType.ORGANIZATION_RENAMED,
        actor,
        target=(TargetType.ORGANIZATION, actor.organization.id),
        details={"from": previous, "to": name},
    )
    await session.flush()
    logger.info("Organization %s renamed by %s", actor.organization.id, actor.actor)
    return actor.organization


@raises(NotFoundError, QueueUnavailableError)
async def delete(session: AsyncSession, jobs: Jobs, actor: OrgAccess) -> None:
    """Delete the organization with its memberships and files; jobs remove the files'
    objects once the deletion commits (and the storage sweep any a lost job left)."""
    await organization_lock.hold(session, actor.organization.id, to_delete=True)
    await file_service.remove_objects_of(session, jobs, actor.organization.id)
    await session.delete(actor.organization)
    # Kept with the organization's id: platform owners can still read it.
    audit_service.record(
        session,
        AuditType.ORGANIZATION_DELETED,
        actor,
        target=(TargetType.ORGANIZATION, actor.organization.id),
        details={"name": actor.organization.name},
    )
    await session.flush()
    logger.info("Organization %s deleted by %s", actor.organization.id, actor.actor)


@dataclass(frozen=True)
class _Locked:
    owners: set[uuid.UUID]
    roles: dict[uuid.UUID, Role]


async def _lock(session: AsyncSession, organization_id: uuid.UUID, *members: uuid.UUID) -> _Locked:
    """Lock the organization's owners and `members`, and read their roles as they are.

    FOR UPDATE: concurrent changes to the owners of one organization take turns on
    PostgreSQL, and each reads the roles as the one before left them (SQLite serialises
    writers by itself). populate_existing refreshes the memberships already loaded.
    """
    rows = await session.scalars(
        select(Membership)
        .where(
            Membership.organization_id == organization_id,
            or_(Membership.role == Role.OWNER, Membership.user_id.in_(members)),
        )
        # One order for every locker, so two of them never wait on each other in a cycle.
        .order_by(Membership.user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    roles = {membership.user_id: membership.role for membership in rows}
    return _Locked({user for user, role in roles.items() if role is Role.OWNER}, roles)


@raises(NotFoundError, OrganizationPolicyError)
async def _lock_with_authority(
    session: AsyncSession, actor: OrgAccess, target: Membership
) -> _Locked:
    """The locked roles; raises when `actor`'s authority over `target` did not survive the
    changes that took the lock first, or `target` has left meanwhile."""
    locked = await _lock(session, actor.organization.id, actor.user.id, target.user_id)
    if target.user_id not in locked.roles:
        raise NotFoundError(NO_SUCH_MEMBER)
    actor_role = actor.capped(locked.roles.get(actor.user.id))
    if actor_role is None or not manages(actor_role, target.role):
        raise OrganizationPolicyError("Your role in this organization does not allow this.")
    return locked


def _keep_an_owner(owners: set[uuid.UUID], leaving: uuid.UUID) -> None:
    if not owners - {leaving}:
        raise LastOrganizationOwnerError(
            "This is the organization's last owner; make another member owner first."
        )


@raises(NotFoundError, OrganizationPolicyError, LastOrganizationOwnerError)
async def change_role(
    session: AsyncSession, actor: OrgAccess, target: Membership, role: Role
) -> Membership:
    if target.user_id == actor.user.id:
        raise OrganizationPolicyError(
            "You cannot change your own role; another owner of the organization has to."
        )
    # Granting or revoking admin, and granting owner, are an owner's decisions.
    if actor.role is not Role.OWNER:
        raise OrganizationPolicyError("Only the organization's owners change roles.")
    locked = await _lock_with_authority(session, actor, target)
    owners = locked.owners
    if actor.capped(locked.roles.get(actor.user.id)) is not Role.OWNER:
        raise OrganizationPolicyError("Only the organization's owners change roles.")
    if role is target.role:
        return target
    if target.role is Role.OWNER:
        _keep_an_owner(owners, target.user_id)
    previous = target.role
    target.role = role
    audit_service.record(
        session,
        AuditType.MEMBER_ROLE_CHANGED,
        actor,
        target=(TargetType.USER, target.user_id),
        details={"from": previous.value, "to": role.value},
    )
    await session.flush()
    logger.info(
        "Role of user %s in organization %s changed from %s to %s by %s",
        target.user_id,
        actor.organization.id,
        previous.value,
        role.value,
        actor.actor,
    )
    return target


@raises(NotFoundError, OrganizationPolicyError, LastOrganizationOwnerError)
async def remove_member(session: AsyncSession, actor: OrgAccess, target: Membership) -> None:
    if target.user_id == actor.user.id:
        raise OrganizationPolicyError(
            "To remove yourself, leave the organization (POST .../leave)."
        )
    if not manages(actor.role, target.role):
        raise OrganizationPolicyError("Admins manage members only; ask an owner.")
    owners = (await _lock_with_authority(session, actor, target)).owners
    if target.role is Role.OWNER:
        _keep_an_owner(owners, target.user_id)
    await session.delete(target)
    keys = await api_key_service.delete_keys_of(session, actor.organization.id, target.user_id)
    audit_service.record(
        session,
        AuditType.MEMBER_REMOVED,
        actor,
        target=(TargetType.USER, target.user_id),
        details={"role": target.role.value, "api_keys_deleted": keys},
    )
    await session.flush()
    logger.info(
        "User %s removed from organization %s by %s",
        target.user_id,
        actor.organization.id,
        actor.actor,
    )


@raises(NotFoundError, LastOrganizationOwnerError)
async def leave(session: AsyncSession, member: OrgAccess) -> None:
    locked = await _lock(session, member.organization.id, member.user.id)
    if member.user.id not in locked.roles:
        raise NotFoundError(NO_SUCH_MEMBER)
    if member.user.id in locked.owners:
        _keep_an_owner(locked.owners, member.user.id)
    await session.delete(await get_member(session, member.organization, member.user.id))
    keys = await api_key_service.delete_keys_of(session, member.organization.id, member.user.id)
    audit_service.record(
        session,
        AuditType.MEMBER_LEFT,
        member,
        target=(TargetType.USER, member.user.id),
        details={"role": locked.roles[member.user.id].value, "api_keys_deleted": keys},
    )
    await session.flush()
    logger.info("User %s left organization %s", member.user.id, member.organization.id)


@raises(LastOrganizationOwnerError, QueueUnavailableError)
async def release_user(session: AsyncSession, jobs: Jobs, actor: User, user: User) -> None:
    """Before an account is deleted: delete the organizations it is the only member of
    (their objects go by jobs, as for a deletion of each), and refuse when it is the last
    owner of one that has other members."""
    memberships = {
        membership.organization_id: membership.role
        for membership in await session.scalars(
            select(Membership).where(Membership.user_id == user.id)
        )
    }
    mine = [organization for organization, role in memberships.items() if role is Role.OWNER]
    deleted = set()
    for organization_id in mine:
        owners = (await _lock(session, organization_id)).owners
        if owners - {user.id}:
            continue
        members = await session.scalar(
            select(func.count())
            .select_from(Membership)
            .where(Membership.organization_id == organization_id)
        )
        if members and members > 1:
            raise LastOrganizationOwnerError(
                f"This account is the last owner of organization {organization_id}, which has"
                " other members; make one of them owner first."
            )
        organization = await session.get(Organization, organization_id)
        if organization is not None:
            await file_service.remove_objects_of(session, jobs, organization_id)
            await session.delete(organization)
            audit_service.record(
                session,
                AuditType.ORGANIZATION_DELETED,
                actor,
                organization_id=organization_id,
                target=(TargetType.ORGANIZATION, organization_id),
                details={"name": organization.name, "with_account": str(user.id)},
            )
            deleted.add(organization_id)
    # The organizations that stay lose a member, and the member's keys, with the account.
    for organization_id, role in memberships.items():
        if organization_id not in deleted:
            audit_service.record(
                session,
                AuditType.MEMBER_REMOVED,
                actor,
                organization_id=organization_id,
                target=(TargetType.USER, user.id),
                details={"role": role.value, "with_account": True},
            )
    await session.flush()
