"""SQLAlchemy models. Import every model here so that Alembic sees the whole schema."""

from app.models.api_key import ApiKey
from app.models.audit import AuditEvent, AuditType
from app.models.base import Base
from app.models.file import File, FileStatus
from app.models.invitation import Invitation
from app.models.organization import Membership, OrgAccess, Organization
from app.models.token import OneTimeToken, RefreshToken, RefreshTokenFamily, TokenPurpose
from app.models.user import User

__all__ = [
    "ApiKey",
    "AuditEvent",
    "AuditType",
    "Base",
    "File",
    "FileStatus",
    "Invitation",
    "Membership",
    "OneTimeToken",
    "OrgAccess",
    "Organization",
    "RefreshToken",
    "RefreshTokenFamily",
    "TokenPurpose",
    "User",
]
