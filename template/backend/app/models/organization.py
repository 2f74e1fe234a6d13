"""Organizations and who belongs to them.

A membership carries the member's role in that organization (the same owner, admin and
member names as the platform role on `User`, which is about running the service, not
about any one customer's data).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.clock import utcnow
from app.core.rbac import Role, lower
from app.models.api_key import ApiKey
from app.models.base import Base, string_enum
from app.models.user import User

ORGANIZATION_NAME_MAX_LENGTH = 120


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(ORGANIZATION_NAME_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[Role] = mapped_column(string_enum(Role, "membership_role"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Loaded only when a query asks for it (organization_service does, with joinedload):
    # a lazy load in async code would be a hidden query, and fails.
    user: Mapped[User] = relationship(lazy="raise")


@dataclass(frozen=True)
class OrgAccess:
    """Who acts on an organization, and with which role in it, as a request's guard
    (`require_org_roles`) found it in the database.

    A request with an API key acts for the key's creator (`user`), with the lower of the
    key's role and the creator's (`role`); `api_key` is the key.
    """

    organization: Organization
    role: Role
    user: User
    api_key: ApiKey | None = None

    @property
    def actor(self) -> str:
        """Who acts, as logs name it: the user, or the API key and the user it acts for."""
        if self.api_key is None:
            return f"user {self.user.id}"
        return f"API key {self.api_key.prefix} ({self.api_key.id}) of user {self.user.id}"

    def capped(self, role: Role | None) -> Role | None:
        """`role`, the user's role in the organization as read again under a lock, as far
        as this access may use it: no further than the API key's role."""
        if role is None or self.api_key is None:
            return role
        return lower(role, self.api_key.role)
