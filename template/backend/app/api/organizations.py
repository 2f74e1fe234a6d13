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
    OrgManager,
    OrgMember,
    OrgOwner,
    PagingDep,
    SessionDep,
    VerifiedUser,
)
from app.core.errors import raises
from app.core.rbac import Role
from app.models import Membership
from app.schemas.organization import (
    MemberOut,
    MemberPage,
    OrganizationIn,
    OrganizationOut,
    OrganizationPage,
)
from app.schemas.user import RoleIn
from app.services import organization_service

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
async def delete_organization(owner: OrgOwner, session: SessionDep, jobs: JobsDep) -> None:
    """Delete the organization, its memberships and its files."""
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
async def leave_organization(member: OrgMember, session: SessionDep) -> None:
    """Leave the organization; its last owner cannot, before making another owner."""
    await organization_service.leave(session, member)
