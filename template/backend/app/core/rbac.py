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


# From most to least powerful.
RANK = {Role.OWNER: 0, Role.ADMIN: 1, Role.MEMBER: 2}


def lower(first: Role, second: Role) -> Role:
    """The less powerful of two roles: what an API key may do is the lower of its own role
    and its creator's present one."""
    return first if RANK[first] >= RANK[second] else second
