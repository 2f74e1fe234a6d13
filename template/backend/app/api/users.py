"""Accounts: one's own under /users/me; everyone's for owners and admins.

Who may do what to whom is decided in services/user_service.py: owners manage everyone,
admins manage members, nobody changes their own role or status, only owners change
roles, and the last owner stays an active owner.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status
from sqlalchemy import select

from app.api.deps import MAX_OFFSET, CurrentUser, SessionDep, get_verified_user
from app.core.rbac import Role, require_roles
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


async def get_target(user_id: uuid.UUID, session: SessionDep) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="No such user.")
    return user


Target = Annotated[User, Depends(get_target)]


def refused(error: user_service.PolicyError) -> HTTPException:
    code = status.HTTP_409_CONFLICT if error.conflict else status.HTTP_403_FORBIDDEN
    return HTTPException(status_code=code, detail=error.message)


@router.get("", response_model=UserPage, dependencies=manager_only)
async def list_users(
    _: Manager,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> UserPage:
    users = await session.scalars(
        select(User).order_by(User.created_at, User.id).limit(limit).offset(offset)
    )
    return UserPage(
        items=[UserOut.model_validate(user) for user in users],
        total=await user_service.count_users(session),
        limit=limit,
        offset=offset,
    )


@router.get("/{user_id}", response_model=UserOut, dependencies=manager_only)
async def read_user(_: Manager, target: Target) -> User:
    return target


@router.put("/{user_id}/role", response_model=UserOut, dependencies=manager_only)
async def change_role(body: RoleIn, actor: Manager, target: Target, session: SessionDep) -> User:
    try:
        await user_service.change_role(session, actor, target, body.role)
    except user_service.PolicyError as error:
        raise refused(error) from None
    return target


async def set_active(actor: User, target: User, session: SessionDep, *, active: bool) -> User:
    try:
        await user_service.set_active(session, actor, target, active=active)
    except user_service.PolicyError as error:
        raise refused(error) from None
    return target


@router.post("/{user_id}/deactivate", response_model=UserOut, dependencies=manager_only)
async def deactivate(actor: Manager, target: Target, session: SessionDep) -> User:
    return await set_active(actor, target, session, active=False)


@router.post("/{user_id}/activate", response_model=UserOut, dependencies=manager_only)
async def activate(actor: Manager, target: Target, session: SessionDep) -> User:
    return await set_active(actor, target, session, active=True)


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=manager_only)
async def delete_user(actor: Manager, target: Target, session: SessionDep) -> None:
    try:
        await user_service.delete_user(session, actor, target)
    except user_service.PolicyError as error:
        raise refused(error) from None
