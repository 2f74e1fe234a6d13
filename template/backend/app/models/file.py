"""Uploaded files. The bytes live in storage under `object_key`; this row says whose
they are and what they are."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.models.base import Base, string_enum


class FileStatus(StrEnum):
    PENDING = "pending"  # stored; the process_file job has not checked it yet
    READY = "ready"
    FAILED = "failed"


class File(Base):
    __tablename__ = "files"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # The organization the file belongs to; deleting it deletes its files' rows, and the
    # storage sweep then removes their objects.
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    # Who uploaded it; None once that account is deleted (the file stays the
    # organization's).
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    # A random name under a fixed prefix: the user's filename never reaches storage.
    object_key: Mapped[str] = mapped_column(String(128), unique=True)
    original_name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    checksum_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[FileStatus] = mapped_column(
        string_enum(FileStatus, "file_status"), default=FileStatus.PENDING
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
