from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.models.audit import TargetType
from app.schemas.common import Page, UtcDatetime


class AuditEventOut(BaseModel):
    """A security event: who acted (a user, or an API key and the user it acts for), on
    what, from where, and when."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    created_at: UtcDatetime
    # Text, not the enum: an event of a type since removed from AuditType still reads.
    type: str = Field(description="One of the types the `type` filter takes.")
    actor_user_id: uuid.UUID | None = Field(description="None for a failed login.")
    actor_api_key_id: uuid.UUID | None
    organization_id: uuid.UUID | None
    target_type: TargetType | None
    target_id: uuid.UUID | None
    client_address: str | None
    user_agent: str | None
    details: dict[str, Any] = Field(
        description="What the event needs to be read on its own: roles, names, emails."
    )


class AuditEventPage(Page):
    items: list[AuditEventOut]
