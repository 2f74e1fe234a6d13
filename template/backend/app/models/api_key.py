"""API keys: how a machine client acts in one organization, with a role of its own.

The key itself is shown once, when it is created; the table keeps its keyed hash
(app/core/security.py) and the visible prefix that tells keys apart. A revoked key's row
is deleted, so every row is a key that works until `expires_at`.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.rbac import Role
from app.models.base import Base, string_enum

API_KEY_NAME_MAX_LENGTH = 120


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(API_KEY_NAME_MAX_LENGTH))
    role: Mapped[Role] = mapped_column(string_enum(Role, "api_key_role"))
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The key acts for its creator, with at most the creator's present role: when the
    # creator leaves the organization or the account goes, the key stops working.
    created_by: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Written at most once a minute per key (api_key_service.USE_RECORD_SECONDS), not per
    # request.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
