from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict

from app.core.rbac import Role
from app.schemas.auth import DisplayName
from app.schemas.common import Page, UtcDatetime


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str | None
    role: Role
    is_active: bool
    is_verified: bool
    created_at: UtcDatetime


class UserUpdate(BaseModel):
    """What users may change on their own account. Role and status are not here: they
    are changed by owners and admins through /users/{id}."""

    model_config = ConfigDict(extra="forbid")

    full_name: DisplayName | None = None


class RoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role


class UserPage(Page):
    items: list[UserOut]
