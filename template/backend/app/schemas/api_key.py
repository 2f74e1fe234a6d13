from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from app.core.clock import utcnow
from app.core.rbac import Role
from app.schemas.auth import Password, StrictBody
from app.schemas.common import Page, UtcDatetime
from app.schemas.organization import OrganizationName


def _future_utc(moment: datetime) -> datetime:
    if moment <= utcnow():
        raise ValueError("must be in the future")
    return moment.astimezone(UTC)


class ApiKeyIn(StrictBody):
    # The caller's own password again: an access token alone, if stolen, makes no key.
    password: str = Password
    name: OrganizationName
    role: Role = Role.MEMBER
    # With a time zone (2030-01-01T00:00:00Z); none: the key lasts until it is revoked.
    expires_at: Annotated[AwareDatetime, AfterValidator(_future_utc)] | None = None


class ApiKeyOut(BaseModel):
    """An API key, without its secret: `prefix` is its visible start, to recognise it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str
    role: Role
    created_by: uuid.UUID
    created_at: UtcDatetime
    expires_at: UtcDatetime | None
    last_used_at: UtcDatetime | None


class ApiKeyCreated(ApiKeyOut):
    """A new key with its secret, which this answer alone holds: nothing stores it."""

    secret: str = Field(description="Send as `Authorization: Bearer <secret>`.")


class ApiKeyPage(Page):
    items: list[ApiKeyOut]
