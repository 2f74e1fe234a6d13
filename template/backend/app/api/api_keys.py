"""An organization's API keys, for machine clients: created, listed and revoked by its
owners and admins in person (the rules are in services/api_key_service.py). A key goes
in the Authorization header as a bearer credential, like an access token, and opens
its organization's routes with its role.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Response, status

from app.api.auth import NO_STORE
from app.api.deps import (
    ManagerInPerson,
    PagingDep,
    SessionDep,
    SettingsDep,
    ThrottleDep,
    get_verified_user,
)
from app.core.errors import raises
from app.schemas.api_key import ApiKeyCreated, ApiKeyIn, ApiKeyOut, ApiKeyPage
from app.services import api_key_service, auth_service

router = APIRouter(prefix="/organizations/{org_id}/api-keys", tags=["api keys"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    dependencies=[Depends(get_verified_user)],
)
@raises(auth_service.confirm_password, api_key_service.create)
async def create_api_key(
    body: ApiKeyIn,
    manager: ManagerInPerson,
    session: SessionDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
    response: Response,
) -> ApiKeyCreated:
    """A new key with a role no higher than the caller's, for the caller's password. Its
    `secret` is in this answer only: store it now, it cannot be shown again."""
    await auth_service.confirm_password(session, settings, throttle, manager.user, body.password)
    # A secret: no cache on the way keeps the answer.
    response.headers.update(NO_STORE)
    key, secret = await api_key_service.create(
        session, settings, manager, name=body.name, role=body.role, expires_at=body.expires_at
    )
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), secret=secret)


@router.get("", response_model=ApiKeyPage)
async def list_api_keys(
    manager: ManagerInPerson, session: SessionDep, paging: PagingDep
) -> ApiKeyPage:
    """The organization's keys, newest first, without their secrets."""
    rows, total = await api_key_service.list_keys(
        session, manager.organization, paging.limit, paging.offset
    )
    return ApiKeyPage.of(rows, total, paging)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
@raises(api_key_service.revoke)
async def revoke_api_key(key_id: uuid.UUID, manager: ManagerInPerson, session: SessionDep) -> None:
    """Revoke the key: the next request with it is refused. Owners revoke any key,
    admins those of members and their own."""
    await api_key_service.revoke(session, manager, key_id)
