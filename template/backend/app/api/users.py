"""Accounts: one's own under /users/me; everyone's for owners and admins.

Who may do what to whom is decided in services/user_service.py: owners manage everyone,
admins manage members, nobody changes their own role or status, only owners change
roles, and the last owner stays an active owner.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status

from app.api.deps import (
    CurrentUser,
    JobsDep,
    PagingDep,
    SessionDep,
    get_verified_user,
    require_roles,
)
from app.core.errors import raises
from app.core.rbac import Role
from app.models import User
from app.schemas.user import RoleIn, UserOut, UserPage, UserUpdate
from app.services import user_service

router = APIRouter(prefix="/users", tags=["users"])

# Managing other people's accounts takes a role and a verified email address.
Manager = Annotated[User, Depends(require_roles(Role.OWNER, Role.ADMIN))]
manager_only = [Depends(get_verified_user)]


@router.get("/me", response_model=UserOut)
async def read_me(user: CurrentUser) -> User:
    return user


@router.patch("/me", response_model=UserOut)
async def update_me(body: UserUpdate, user: CurrentUser, session: SessionDep) -> User:
    for field, value in body.model_dump(exclude_unset=True).items():
        setattr(user, field, value)
    await session.flush()
    return user


@raises(user_service.get_user)
async def get_target(user_id: uuid.UUID, session: SessionDep) -> User:
    return await user_service.get_user(session, user_id)


Target = Annotated[User, Depends(get_target)]


@router.get("", response_model=UserPage, dependencies=manager_only)
async def list_users(_: Manager, session: SessionDep, paging: PagingDep) -> UserPage:
    users, total = await user_service.list_users(session, paging.limit, paging.offset)
    return UserPage.of(users, total, paging)


@router.get("/{user_id}", response_model=UserOut, dependencies=manager_only)
async def read_user(_: Manager, target: Target) -> User:
    return target


@router.put("/{user_id}/role", response_model=UserOut, dependencies=manager_only)
@raises(user_service.change_role)
async def change_role(body: RoleIn, actor: Manager, target: Target, session: SessionDep) -> User:
    await user_service.change_role(session, actor, target, body.role)
    return target


@router.post("/{user_id}/deactivate", response_model=UserOut, dependencies=manager_only)
@raises(user_service.set_active)
async def deactivate(actor: Manager, target: Target, session: SessionDep) -> User:
    await user_service.set_active(session, actor, target, active=False)
    return target


@router.post("/{user_id}/activate", response_model=UserOut, dependencies=manager_only)
# Activating never takes away the last owner: PolicyError (403) alone, not its 409.
@raises(user_service.PolicyError)
async def activate(actor: Manager, target: Target, session: SessionDep) -> User:
    await user_service.set_active(session, actor, target, active=True)
    return target


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=manager_only)
@raises(user_service.delete_user)
async def delete_user(actor: Manager, target: Target, session: SessionDep, jobs: JobsDep) -> None:
    await user_service.delete_user(session, jobs, actor, target)
