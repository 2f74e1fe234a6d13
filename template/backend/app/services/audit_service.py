"""The audit log: recording security events, reading them, and pruning old ones.

`record` adds an event to the session of the action it records, so the two commit or
roll back together; an action that fails and must still leave its event (a failed login,
a reused refresh token) commits it before it raises. Events name the request's client
address and user agent (app/core/request_context.py) and never hold a secret: no
password, token, key or link, only ids, roles, names and the prefixes keys show anyway.

Nothing here changes or deletes an event, except `prune`, which removes those older than
AUDIT_RETENTION_DAYS (services/retention_service.py runs it).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Select, delete, func, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.request_context import current_origin
from app.models import AuditEvent, OrgAccess, User
from app.models.audit import AuditType, Details, TargetType

# An actor: the signed-in user, an organization's access (a member, or an API key acting
# for its creator), the id of a user who is not loaded, or nobody (a failed login).
Actor = User | OrgAccess | uuid.UUID | None
# The longest IPv6 address in text.
ADDRESS_MAX_LENGTH = 45
# Rows each DELETE of `prune` removes, so that no statement holds its locks for long.
PRUNE_BATCH = 5000


def _actor_ids(actor: Actor) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    if isinstance(actor, OrgAccess):
        return actor.user.id, actor.api_key.id if actor.api_key is not None else None
    if isinstance(actor, User):
        return actor.id, None
    return actor, None


def record(
    session: AsyncSession,
    event: AuditType,
    actor: Actor,
    *,
    organization_id: uuid.UUID | None = None,
    target: tuple[TargetType, uuid.UUID] | None = None,
    details: Details | None = None,
    api_key_id: uuid.UUID | None = None,
) -> AuditEvent:
    """Add the event to the session, to be written with what it records. `api_key_id`
    names the key that acted for `actor` when no OrgAccess says so."""
    user_id, access_key_id = _actor_ids(actor)
    if organization_id is None and isinstance(actor, OrgAccess):
        organization_id = actor.organization.id
    origin = current_origin()
    row = AuditEvent(
        id=uuid.uuid4(),
        created_at=utcnow(),
        type=event.value,
        actor_user_id=user_id,
        actor_api_key_id=api_key_id or access_key_id,
        organization_id=organization_id,
        target_type=target[0].value if target else None,
        target_id=target[1] if target else None,
        client_address=origin.client_address[:ADDRESS_MAX_LENGTH]
        if origin and origin.client_address
        else None,
        user_agent=origin.user_agent if origin else None,
        details=dict(details or {}),
    )
    session.add(row)
    return row


def _filtered(
    query: Select[Any],
    types: Collection[AuditType],
    since: datetime | None,
    until: datetime | None,
) -> Select[Any]:
    if types:
        # Each type once, however often a client repeats it: one parameter per type.
        query = query.where(AuditEvent.type.in_(sorted({event.value for event in types})))
    # SQLite compares stored times as text, in UTC: a time of another zone is converted.
    if since is not None:
        query = query.where(AuditEvent.created_at >= since.astimezone(UTC))
    if until is not None:
        query = query.where(AuditEvent.created_at < until.astimezone(UTC))
    return query


async def list_events(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID | None,
    types: Collection[AuditType],
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> tuple[Sequence[AuditEvent], int]:
    """A page of events, newest first, of one organization or (None) of all, of `types`
    (every type when empty), from `since` up to but excluding `until`."""
    query = select(AuditEvent)
    if organization_id is not None:
        query = query.where(AuditEvent.organization_id == organization_id)
    query = _filtered(query, types, since, until)
    rows = await session.scalars(
        query.order_by(AuditEvent.created_at.desc(), AuditEvent.id).limit(limit).offset(offset)
    )
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    return rows.all(), total or 0


async def prune(session: AsyncSession, before: datetime) -> int:
    """Delete one batch of the events older than `before`; how many went (fewer than
    PRUNE_BATCH: the last batch)."""
    oldest = (
        select(AuditEvent.id)
        .where(AuditEvent.created_at < before.astimezone(UTC))
        .order_by(AuditEvent.created_at)
        .limit(PRUNE_BATCH)
    )
    result = await session.execute(
        delete(AuditEvent)
        .where(AuditEvent.id.in_(oldest))
        .execution_options(synchronize_session=False)
    )
    return cast("CursorResult[Any]", result).rowcount
