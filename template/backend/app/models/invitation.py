"""Pending invitations into an organization. A row lives until the invitation is
accepted, revoked or replaced: only pending ones exist, one per organization and
address. The token is stored as its SHA-256 digest."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.rbac import Role
from app.models.base import Base, string_enum
from app.models.user import EMAIL_MAX_LENGTH


class Invitation(Base):
    __tablename__ = "invitations"
    __table_args__ = (UniqueConstraint("organization_id", "email"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    # Lower-cased, as account emails are.
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    role: Mapped[Role] = mapped_column(string_enum(Role, "invitation_role"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
