from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, String, false, func, true
from sqlalchemy.orm import Mapped, mapped_column

from app.core.rbac import Role
from app.models.base import Base, string_enum

# RFC 5321's limit on a forward path; every email column and field uses it.
EMAIL_MAX_LENGTH = 320


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # Stored lower-cased by the code that creates users, so the unique index is
    # case-insensitive in effect on every database.
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), unique=True, index=True)
    hashed_password: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(
        string_enum(Role, "user_role"),
        default=Role.MEMBER,
        server_default=Role.MEMBER.value,
    )
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    is_verified: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    full_name: Mapped[str | None] = mapped_column(String(120))
    # Access tokens issued before this moment are rejected: a password change or reset
    # moves it forward and so ends every session at once.
    tokens_valid_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
