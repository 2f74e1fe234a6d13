"""Roles and the dependency that guards routes with them.

    @router.get("/reports", dependencies=[Depends(require_roles(Role.ADMIN, Role.OWNER))])

or, to use the user in the route:

    AdminUser = Annotated[User, Depends(require_roles(Role.ADMIN, Role.OWNER))]
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, status

if TYPE_CHECKING:
    from app.models import User


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


def require_roles(*roles: Role) -> Callable[..., Awaitable[User]]:
    """A dependency that lets through authenticated users holding one of `roles`."""
    from app.api.deps import get_current_user

    allowed = frozenset(roles)

    # The parameter is typed Any for FastAPI's sake: User cannot be imported at module
    # level here, since the User model itself imports Role.
    async def dependency(user: Annotated[Any, Depends(get_current_user)]) -> User:
        checked: User = user
        if checked.role not in allowed:
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail="Your role does not allow this action.",
            )
        return checked

    return dependency
