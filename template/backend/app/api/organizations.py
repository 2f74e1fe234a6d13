"""Organizations and their members. Each route under /organizations/{org_id} is guarded
by the caller's role in that organization (`require_org_roles` in deps.py); who may
change whom is decided in services/organization_service.py.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status

from app.api.deps import (
    CurrentUser,
    JobsDep,
    ManagerInPerson,
    MemberInPerson,
    OrgManager,
    OrgMember,
    OrgOwner,
    OwnerInPerson,
    PagingDep,
    SessionDep,
    SettingsDep,
    ThrottleDep,
    VerifiedUser,
    get_verified_user,
)
from app.core.errors import raises
from app.core.rate_limit import RateLimitedError
from app.core.rbac import Role
from app.models import Invitation, Membership, Organization
from app.schemas.organization import (
    AcceptIn,
    InvitationIn,
    InvitationOut,
    InvitationPage,
    MemberOut,
    MemberPage,
    OrganizationIn,
    OrganizationOut,
    OrganizationPage,
)
from app.schemas.user import RoleIn
from app.services import invitation_service, organization_service

router = APIRouter(prefix="/organizations", tags=["organizations"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=OrganizationOut)
async def create_organization(
    body: OrganizationIn, user: VerifiedUser, session: SessionDep
) -> OrganizationOut:
    """A new organization, with the caller as its first owner."""
    organization = await organization_service.create(session, user, body.name)
    return OrganizationOut.of(organization, Role.OWNER)


@router.get("", response_model=OrganizationPage)
async def list_organizations(
    user: CurrentUser, session: SessionDep, paging: PagingDep
) -> OrganizationPage:
    """The caller's organizations, with the caller's role in each, oldest first."""
    rows, total = await organization_service.list_for_user(
        session, user, paging.limit, paging.offset
    )
    items = [OrganizationOut.of(organization, role) for organization, role in rows]
    return OrganizationPage.of(items, total, paging)


@router.get("/{org_id}", response_model=OrganizationOut)
async def read_organization(member: OrgMember) -> OrganizationOut:
    return OrganizationOut.of(member.organization, member.role)


@router.patch("/{org_id}", response_model=OrganizationOut)
async def rename_organization(
    body: OrganizationIn, manager: OrgManager, session: SessionDep
) -> OrganizationOut:
    organization = await organization_service.rename(session, manager, body.name)
    return OrganizationOut.of(organization, manager.role)


@router.delete("/{org_id}", status_code=status.HTTP_204_NO_CONTENT)
@raises(organization_service.delete)
async def delete_organization(owner: OwnerInPerson, session: SessionDep, jobs: JobsDep) -> None:
    """Delete the organization, its memberships and its files: in person, never with an
    API key."""
    await organization_service.delete(session, jobs, owner)


@router.get("/{org_id}/members", response_model=MemberPage)
async def list_members(member: OrgMember, session: SessionDep, paging: PagingDep) -> MemberPage:
    rows, total = await organization_service.list_members(
        session, member.organization, paging.limit, paging.offset
    )
    return MemberPage.of((MemberOut.of(membership) for membership in rows), total, paging)


@raises(organization_service.get_member)
async def get_target_member(
    user_id: uuid.UUID, member: OrgMember, session: SessionDep
) -> Membership:
    return await organization_service.get_member(session, member.organization, user_id)


TargetMember = Annotated[Membership, Depends(get_target_member)]


@router.put("/{org_id}/members/{user_id}/role", response_model=MemberOut)
@raises(organization_service.change_role)
async def change_member_role(
    body: RoleIn, owner: OrgOwner, target: TargetMember, session: SessionDep
) -> MemberOut:
    """Only owners change roles: they alone grant or revoke admin and owner."""
    await organization_service.change_role(session, owner, target, body.role)
    return MemberOut.of(
        await organization_service.get_member(session, owner.organization, target.user_id)
    )


@router.delete("/{org_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
@raises(organization_service.remove_member)
async def remove_member(manager: OrgManager, target: TargetMember, session: SessionDep) -> None:
    """Owners remove anyone but themselves, admins remove members."""
    await organization_service.remove_member(session, manager, target)


@router.post("/{org_id}/leave", status_code=status.HTTP_204_NO_CONTENT)
@raises(organization_service.leave)
async def leave_organization(member: MemberInPerson, session: SessionDep) -> None:
    """Leave the organization; its last owner cannot, before making another owner."""
    await organization_service.leave(session, member)


@router.post(
    "/{org_id}/invitations",
    status_code=status.HTTP_201_CREATED,
    response_model=InvitationOut,
    # Each invitation is an email sent in the inviter's name.
    dependencies=[Depends(get_verified_user)],
)
@raises(invitation_service.invite, RateLimitedError)
async def invite(
    body: InvitationIn,
    manager: ManagerInPerson,
    session: SessionDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
    jobs: JobsDep,
) -> Invitation:
    """Invite an address with a role (admins invite members only); inviting it again
    replaces the pending invitation. The link goes to the address by email."""
    await throttle.hit(settings.INVITATION_LIMIT_PER_INVITER, "invitation", str(manager.user.id))
    return await invitation_service.invite(
        session, jobs, settings, manager, email=body.email, role=body.role
    )


@router.get("/{org_id}/invitations", response_model=InvitationPage)
async def list_invitations(
    manager: OrgManager, session: SessionDep, paging: PagingDep
) -> InvitationPage:
    """The organization's pending invitations, newest first."""
    rows, total = await invitation_service.list_pending(
        session, manager.organization, paging.limit, paging.offset
    )
    return InvitationPage.of(rows, total, paging)


@router.delete("/{org_id}/invitations/{invitation_id}", status_code=status.HTTP_204_NO_CONTENT)
@raises(invitation_service.revoke)
async def revoke_invitation(
    invitation_id: uuid.UUID, manager: OrgManager, session: SessionDep
) -> None:
    await invitation_service.revoke(session, manager, invitation_id)


invitations = APIRouter(prefix="/invitations", tags=["organizations"])


@invitations.post("/accept", response_model=OrganizationOut)
@raises(invitation_service.accept)
async def accept_invitation(
    body: AcceptIn, user: VerifiedUser, session: SessionDep
) -> OrganizationOut:
    """Join the organization of the invitation, with its role: the signed-in account's
    address must be the invited one, and verified."""
    membership = await invitation_service.accept(session, user, body.token)
    organization = await session.get_one(Organization, membership.organization_id)
    return OrganizationOut.of(organization, membership.role)
