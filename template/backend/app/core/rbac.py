"""Roles and the dependency that guards routes with them.

    @router.get("/reports", dependencies=[Depends(require_roles(Role.ADMIN, Role.OWNER))])

or, to use the user in the route:

    AdminUser = Annotated[User, Depends(require_roles(Role.ADMIN, Role.OWNER))]
"""

# No `from __future__ import annotations` in this module: FastAPI reads the signature of
# the dependency below at run time, and its annotation names an alias imported inside
# require_roles, which a postponed (string) annotation could not resolve.

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING

from fastapi import HTTPException, status

if TYPE_CHECKING:
    from app.models import User


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


def manages(actor: Role, target: Role) -> bool:
    """Whether a holder of `actor` may act on what belongs to a holder of `target`:
    owners manage everyone, admins manage members, members manage nobody else. Accounts
    and files follow this one rule."""
    return actor is Role.OWNER or (actor is Role.ADMIN and target is Role.MEMBER)


def require_roles(*roles: Role) -> "Callable[..., Awaitable[User]]":
    """A dependency that lets through authenticated users holding one of `roles`.

    The role is read from the database with the user on every request, never from the
    token, so a role change applies to the very next request.
    """
    # Imported here because the User model imports Role from this module.
    from app.api.deps import CurrentUser

    allowed = frozenset(roles)

    async def dependency(user: CurrentUser) -> "User":
        if user.role not in allowed:
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail="Your role does not allow this action.",
            )
        return user

    return dependency
