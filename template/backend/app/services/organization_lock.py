"""Keeping an organization from being deleted while a request adds to it or changes it.

Without this, on PostgreSQL, a request that read the organization just before another
request deleted it would go on to update a row that is gone, insert rows whose foreign
key no longer holds, or wait in a lock cycle with the deletion's cascade: a 500 for a
race. Holding the organization's row first makes the deletion come wholly before (the
request then answers 404) or wholly after (the deletion waits, and takes what the
request added with it). SQLite runs one writing transaction at a time, so there the two
never overlap.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFoundError, raises
from app.models import Organization

NO_SUCH_ORGANIZATION = "No such organization."


@raises(NotFoundError)
async def hold(
    session: AsyncSession, organization_id: uuid.UUID, *, to_delete: bool = False
) -> None:
    """Lock the organization's row until the transaction ends; NotFoundError when it is
    deleted already. Requests that hold it do not wait for each other (FOR KEY SHARE); a
    deletion waits for them, and one that holds it `to_delete` (FOR UPDATE) is waited for
    by them and by another deletion."""
    found = await session.scalar(
        select(Organization.id)
        .where(Organization.id == organization_id)
        .with_for_update(key_share=not to_delete)
    )
    if found is None:
        raise NotFoundError(NO_SUCH_ORGANIZATION)
