from __future__ import annotations

import unicodedata
import uuid
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.core.rbac import Role
from app.models import Membership, Organization
from app.schemas.auth import DisplayName, EmailAddress, StrictBody
from app.schemas.common import Page, UtcDatetime


def _one_line(value: str) -> str:
    # The name goes into email subjects, which a line or paragraph separator would break.
    value = value.strip()
    if not value:
        raise ValueError("the name must have a character other than a space")
    if any(unicodedata.category(char) in {"Zl", "Zp"} for char in value):
        raise ValueError("must be one line")
    return value


# As a person's name is (at most 120 characters, none a control character), and not
# blank; the spaces around it are dropped.
OrganizationName = Annotated[DisplayName, AfterValidator(_one_line)]


class OrganizationIn(StrictBody):
    name: OrganizationName


class OrganizationOut(BaseModel):
    """An organization, with the caller's role in it."""

    id: uuid.UUID
    name: str
    created_at: UtcDatetime
    role: Role

    @classmethod
    def of(cls, organization: Organization, role: Role) -> OrganizationOut:
        return cls(
            id=organization.id,
            name=organization.name,
            created_at=organization.created_at,
            role=role,
        )


class OrganizationPage(Page):
    items: list[OrganizationOut]


class MemberOut(BaseModel):
    user_id: uuid.UUID
    email: str
    full_name: str | None
    role: Role
    joined_at: UtcDatetime

    @classmethod
    def of(cls, membership: Membership) -> MemberOut:
        """The member, from a membership loaded with its user."""
        user = membership.user
        return cls(
            user_id=user.id,
            email=user.email,
            full_name=user.full_name,
            role=membership.role,
            joined_at=membership.created_at,
        )


class MemberPage(Page):
    items: list[MemberOut]


class InvitationIn(StrictBody):
    email: EmailAddress
    role: Role = Role.MEMBER


class InvitationOut(BaseModel):
    """A pending invitation; its token went to the address only, by email."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    role: Role
    invited_by: uuid.UUID | None
    created_at: UtcDatetime
    expires_at: UtcDatetime


class InvitationPage(Page):
    items: list[InvitationOut]


class AcceptIn(StrictBody):
    token: str = Field(min_length=1, max_length=256)
