"""The audit log: one row per security event, written in the same transaction as what it
records, and never changed afterwards (app/services/audit_service.py writes and prunes).

No foreign keys: an event outlives the accounts, organizations and keys it names, and
deleting any of them changes no event.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.request_context import USER_AGENT_MAX_LENGTH
from app.models.base import Base


class AuditType(StrEnum):
    LOGIN_SUCCEEDED = "auth.login_succeeded"
    LOGIN_FAILED = "auth.login_failed"
    REFRESH_TOKEN_REUSED = "auth.refresh_token_reused"  # noqa: S105 - event names, not secrets
    PASSWORD_CONFIRMATION_FAILED = "auth.password_confirmation_failed"  # noqa: S105
    LOGOUT = "auth.logout"
    PASSWORD_CHANGED = "auth.password_changed"  # noqa: S105
    PASSWORD_RESET = "auth.password_reset"  # noqa: S105
    EMAIL_VERIFIED = "auth.email_verified"
    USER_REGISTERED = "user.registered"
    USER_ROLE_CHANGED = "user.role_changed"
    USER_DEACTIVATED = "user.deactivated"
    USER_ACTIVATED = "user.activated"
    USER_DELETED = "user.deleted"
    ORGANIZATION_CREATED = "organization.created"
    ORGANIZATION_RENAMED = "organization.renamed"
    ORGANIZATION_DELETED = "organization.deleted"
    MEMBER_ROLE_CHANGED = "member.role_changed"
    MEMBER_REMOVED = "member.removed"
    MEMBER_LEFT = "member.left"
    INVITATION_SENT = "invitation.sent"
    INVITATION_ACCEPTED = "invitation.accepted"
    INVITATION_REVOKED = "invitation.revoked"
    API_KEY_CREATED = "api_key.created"
    API_KEY_FIRST_USED = "api_key.first_used"
    API_KEY_REVOKED = "api_key.revoked"
    FILE_DELETED = "file.deleted"


class TargetType(StrEnum):
    USER = "user"
    ORGANIZATION = "organization"
    INVITATION = "invitation"
    API_KEY = "api_key"
    FILE = "file"


# Plain values only, never a secret: what the event needs to be read without a join.
Details = dict[str, str | int | bool | None]


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        # The organization's log, newest first: its route's one query.
        Index("ix_audit_events_organization_id_created_at", "organization_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    type: Mapped[str] = mapped_column(String(40))
    # Who acted: a user, or an API key with the user it acts for; neither for a failed
    # login and for what the system does itself.
    actor_user_id: Mapped[uuid.UUID | None]
    actor_api_key_id: Mapped[uuid.UUID | None]
    # The organization the event belongs to, which its owners and admins read; None for
    # events of an account or of the platform, which platform owners read.
    organization_id: Mapped[uuid.UUID | None]
    target_type: Mapped[str | None] = mapped_column(String(20))
    target_id: Mapped[uuid.UUID | None]
    client_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX_LENGTH))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
