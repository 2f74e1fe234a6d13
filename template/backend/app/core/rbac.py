"""Roles, and the one rule of who manages whom.

Routes are guarded by role with `require_roles` in app/api/deps.py, which reads the
user's role from the database on every request:

    from app.api.deps import require_roles
    from app.core.rbac import Role

    @router.get("/reports", dependencies=[Depends(require_roles(Role.ADMIN, Role.OWNER))])
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


def manages(actor: Role, target: Role) -> bool:
    """Whether a holder of `actor` may act on what belongs to a holder of `target`:
    owners manage everyone, admins manage members, members manage nobody else. Accounts
    and files follow this one rule."""
    return actor is Role.OWNER or (actor is Role.ADMIN and target is Role.MEMBER)
