"""Invitations into an organization: sending, listing, revoking and accepting them.

An invitation is bound to its organization, an email address and a role; its token is
256 random bits, mailed in a link and stored only as a digest; it is used once, expires
after INVITATION_TOKEN_DAYS, and inviting the same address again replaces it. Owners
invite with any role, admins members only (granting admin is an owner's decision).
Accepting takes a signed-in, verified account with the invited address, so a person
without an account registers first and then opens the same link.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import delete, func, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import as_utc, utcnow
from app.core.config import Settings
from app.core.errors import AppError, NotFoundError, raises
from app.core.queue import Jobs, QueueUnavailableError
from app.core.rbac import Role, manages
from app.core.security import digest, new_opaque_token
from app.models import AuditType, Invitation, Membership, OrgAccess, Organization, User
from app.models.audit import TargetType
from app.services import audit_service, organization_lock
from app.services.account_service import link_base
from app.services.email_service import Email, send_email_job

logger = logging.getLogger("app.organizations")

ACCEPT_PAGE = "accept-invitation"
INVALID_INVITATION = "This invitation is not valid: it was used, revoked or replaced."


class InvitationPolicyError(AppError):
    """An invitation the inviter's role does not allow."""

    status_code = 403


class AlreadyMemberError(AppError):
    """The address is a member already, or another invitation of it is being sent."""

    status_code = 409


class InvalidInvitationError(AppError):
    """The token matches no pending invitation, or that invitation has expired."""

    status_code = 400


class WrongInviteeError(AppError):
    """The invitation is for another address than the signed-in account's."""

    status_code = 403


@raises(NotFoundError, InvitationPolicyError, AlreadyMemberError, QueueUnavailableError)
async def invite(
    session: AsyncSession,
    jobs: Jobs,
    settings: Settings,
    inviter: OrgAccess,
    *,
    email: str,
    role: Role,
) -> Invitation:
    """Invite `email` into the inviter's organization with `role`, replacing a pending
    invitation of the same address, and mail it the link."""
    if role is not Role.MEMBER and inviter.role is not Role.OWNER:
        raise InvitationPolicyError("Admins invite members only; ask an owner.")
    organization = inviter.organization
    await organization_lock.hold(session, organization.id)
    member = await session.scalar(
        select(Membership.user_id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.organization_id == organization.id, User.email == email)
    )
    if member is not None:
        raise AlreadyMemberError("This address is a member of the organization already.")
    pending = await session.scalar(
        select(Invitation.role).where(
            Invitation.organization_id == organization.id, Invitation.email == email
        )
    )
    if pending is not None and not manages(inviter.role, pending):
        raise InvitationPolicyError(
            "An owner invited this address as admin or owner; only an owner replaces that."
        )
    token = new_opaque_token()
    invitation = Invitation(
        organization_id=organization.id,
        email=email,
        role=role,
        token_hash=digest(token),
        invited_by=inviter.user.id,
        expires_at=utcnow() + timedelta(days=settings.INVITATION_TOKEN_DAYS),
    )
    await _replace_pending(session, invitation)
    audit_service.record(
        session,
        AuditType.INVITATION_SENT,
        inviter,
        target=(TargetType.INVITATION, invitation.id),
        details={"email": email, "role": role.value},
    )
    await jobs.enqueue(
        send_email_job(_invitation_email(invitation, organization, inviter.user, token, settings))
    )
    logger.info(
        "Invitation %s into organization %s as %s sent by user %s",
        invitation.id,
        organization.id,
        role.value,
        inviter.user.id,
    )
    return invitation


async def _replace_pending(session: AsyncSession, invitation: Invitation) -> None:
    # One pending invitation per organization and address (a unique constraint): the
    # new one replaces the old. Two invitations of one address racing each other: the
    # second insert meets the first's row and replaces it in turn.
    for _attempt in range(2):
        try:
            async with session.begin_nested():
                await session.execute(
                    delete(Invitation).where(
                        Invitation.organization_id == invitation.organization_id,
                        Invitation.email == invitation.email,
                    )
                )
                session.add(invitation)
            return
        except IntegrityError:
            continue
    raise AlreadyMemberError("Another invitation of this address is being sent; try again.")


def _invitation_email(
    invitation: Invitation,
    organization: Organization,
    inviter: User,
    token: str,
    settings: Settings,
) -> Email:
    return Email(
        to=invitation.email,
        template="invitation",
        subject=f"You are invited to join {organization.name}",
        context={
            "organization": organization.name,
            "inviter": inviter.full_name or inviter.email,
            "role": invitation.role.value,
            "valid_days": settings.INVITATION_TOKEN_DAYS,
            "link": f"{link_base(settings)}/{ACCEPT_PAGE}#token={token}",
        },
    )


async def list_pending(
    session: AsyncSession, organization: Organization, limit: int, offset: int
) -> tuple[Sequence[Invitation], int]:
    """A page of the organization's pending invitations, newest first."""
    pending = select(Invitation).where(Invitation.organization_id == organization.id)
    rows = await session.scalars(
        pending.order_by(Invitation.created_at.desc(), Invitation.id).limit(limit).offset(offset)
    )
    total = await session.scalar(select(func.count()).select_from(pending.subquery()))
    return rows.all(), total or 0


@raises(NotFoundError, InvitationPolicyError)
async def revoke(session: AsyncSession, actor: OrgAccess, invitation_id: uuid.UUID) -> None:
    invitation = await session.scalar(
        select(Invitation).where(
            Invitation.id == invitation_id,
            Invitation.organization_id == actor.organization.id,
        )
    )
    if invitation is None:
        raise NotFoundError("No such invitation.")
    if not manages(actor.role, invitation.role):
        raise InvitationPolicyError("Admins revoke invitations of members only; ask an owner.")
    await session.delete(invitation)
    audit_service.record(
        session,
        AuditType.INVITATION_REVOKED,
        actor,
        target=(TargetType.INVITATION, invitation.id),
        details={"email": invitation.email, "role": invitation.role.value},
    )
    await session.flush()
    logger.info("Invitation %s revoked by %s", invitation.id, actor.actor)


async def _inviter_may_still_grant(session: AsyncSession, invitation: Invitation) -> bool:
    # An invitation carries its sender's authority, so it is worth what that authority
    # is now: a removed or demoted admin cannot get back in through an address of their
    # own they invited before.
    if invitation.invited_by is None:
        return False
    role = await session.scalar(
        select(Membership.role).where(
            Membership.organization_id == invitation.organization_id,
            Membership.user_id == invitation.invited_by,
        )
    )
    return role is Role.OWNER or (role is Role.ADMIN and invitation.role is Role.MEMBER)


@raises(InvalidInvitationError, WrongInviteeError, AlreadyMemberError)
async def accept(session: AsyncSession, user: User, token: str) -> Membership:
    """Make `user` a member with the invitation's role, spending the invitation."""
    token_hash = digest(token)
    organization_id = await session.scalar(
        select(Invitation.organization_id).where(Invitation.token_hash == token_hash)
    )
    if organization_id is None:
        raise InvalidInvitationError(INVALID_INVITATION)
    # The organization first, then the invitation: the order a deletion's cascade takes.
    try:
        await organization_lock.hold(session, organization_id)
    except NotFoundError:
        raise InvalidInvitationError(INVALID_INVITATION) from None
    invitation = await session.scalar(
        select(Invitation).where(Invitation.token_hash == token_hash).with_for_update()
    )
    if invitation is None:
        raise InvalidInvitationError(INVALID_INVITATION)
    if as_utc(invitation.expires_at) <= utcnow():
        raise InvalidInvitationError("This invitation has expired; ask for a new one.")
    if not await _inviter_may_still_grant(session, invitation):
        raise InvalidInvitationError(
            "This invitation is no longer valid: whoever sent it can no longer grant its"
            " role. Ask for a new one."
        )
    if invitation.email != user.email:
        raise WrongInviteeError(
            "This invitation is for another email address; sign in with that one."
        )
    existing = await session.get(Membership, (invitation.organization_id, user.id))
    if existing is not None:
        raise AlreadyMemberError("You are a member of this organization already.")
    membership = Membership(
        organization_id=invitation.organization_id, user_id=user.id, role=invitation.role
    )
    session.add(membership)
    await session.delete(invitation)
    audit_service.record(
        session,
        AuditType.INVITATION_ACCEPTED,
        user,
        organization_id=invitation.organization_id,
        target=(TargetType.INVITATION, invitation.id),
        details={"email": invitation.email, "role": invitation.role.value},
    )
    await session.flush()
    logger.info(
        "Invitation %s accepted by user %s: member of organization %s as %s",
        invitation.id,
        user.id,
        invitation.organization_id,
        invitation.role.value,
    )
    return membership


async def purge_expired(session: AsyncSession, now: datetime) -> int:
    """Delete the invitations that expired before `now`; how many there were."""
    result = await session.execute(
        delete(Invitation)
        .where(Invitation.expires_at < now.astimezone(UTC))
        .execution_options(synchronize_session=False)
    )
    return cast("CursorResult[Any]", result).rowcount
