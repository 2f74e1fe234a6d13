from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.core.emails import normalise_email
from app.core.security import PASSWORD_MAX_LENGTH
from app.models.user import EMAIL_MAX_LENGTH

# Length is checked here so that an oversized password is a 422 before any hashing;
# the other rules (minimum length, common passwords) give their reason in the service.
Password = Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)


def _no_control_characters(value: str) -> str:
    # PostgreSQL cannot store NUL in text, and no name needs a line break or a tab.
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise ValueError("must not contain control characters")
    return value


def _email_address(value: str) -> str:
    return normalise_email(value, allow_special_use=True)


# The app's one email rule (app/core/emails.py); the field holds the normalised address.
# Special-use domains pass here in every environment: FastAPI validates a body before
# any dependency runs, so a schema cannot know the settings of the app that serves it;
# code that holds the settings refuses them in production (create-owner does). The
# length is checked first, so oversized input never reaches the parser.
EmailAddress = Annotated[str, Field(max_length=EMAIL_MAX_LENGTH), AfterValidator(_email_address)]

# A person's name as they want it shown.
DisplayName = Annotated[str, Field(max_length=120), AfterValidator(_no_control_characters)]


class StrictBody(BaseModel):
    # Unknown fields are refused rather than ignored: `role` in a registration body is
    # an error, not something silently dropped.
    model_config = ConfigDict(extra="forbid")


class RegisterIn(StrictBody):
    email: EmailAddress
    password: str = Password
    full_name: DisplayName | None = None


class TokenPair(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 scheme name
    expires_in: int
    refresh_token: str


class RefreshIn(StrictBody):
    refresh_token: str = Field(min_length=1, max_length=256)


class EmailIn(StrictBody):
    email: EmailAddress


class TokenIn(StrictBody):
    token: str = Field(min_length=1, max_length=256)


class ResetIn(StrictBody):
    token: str = Field(min_length=1, max_length=256)
    new_password: str = Password


class ChangePasswordIn(StrictBody):
    current_password: str = Password
    new_password: str = Password


class Accepted(BaseModel):
    detail: str
