"""The audit log, read-only: an organization's events for its owners and admins (and
their API keys, for a security tool to collect them), every event for platform owners.
No route changes or deletes an event; old ones are pruned after AUDIT_RETENTION_DAYS.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import OrgManager, PagingDep, SessionDep, get_verified_user, require_roles
from app.core.errors import AppError, raises
from app.core.rbac import Role
from app.models import AuditType
from app.schemas.audit import AuditEventPage
from app.schemas.common import Paging
from app.services import audit_service

router = APIRouter(tags=["audit"])


class InvalidPeriodError(AppError):
    """`since` is not before `until`."""

    status_code = 422


@dataclass(frozen=True)
class EventFilter:
    types: list[AuditType]
    since: datetime | None
    until: datetime | None


def _utc(name: str, moment: datetime | None) -> datetime | None:
    # In UTC, a time near the ends of the calendar may fall outside it.
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidPeriodError(f"`{name}` is out of range.") from None


@raises(InvalidPeriodError)
async def get_event_filter(
    type_: Annotated[
        list[AuditType] | None,
        Query(alias="type", description="Only events of these types (repeat for several)"),
    ] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="From this time on (with a time zone)")
    ] = None,
    until: Annotated[
        AwareDatetime | None,
        Query(description="Before this time: fix it to page through a list that grows"),
    ] = None,
) -> EventFilter:
    start, end = _utc("since", since), _utc("until", until)
    if start is not None and end is not None and start >= end:
        raise InvalidPeriodError("`since` must be before `until`.")
    return EventFilter(type_ or [], start, end)


FilterDep = Annotated[EventFilter, Depends(get_event_filter)]


async def _page(
    session: AsyncSession, organization_id: uuid.UUID | None, paging: Paging, events: EventFilter
) -> AuditEventPage:
    rows, total = await audit_service.list_events(
        session,
        organization_id=organization_id,
        types=events.types,
        since=events.since,
        until=events.until,
        limit=paging.limit,
        offset=paging.offset,
    )
    return AuditEventPage.of(rows, total, paging)


@router.get("/organizations/{org_id}/audit-events", response_model=AuditEventPage)
async def list_organization_events(
    manager: OrgManager, session: SessionDep, paging: PagingDep, events: FilterDep
) -> AuditEventPage:
    """The organization's events, newest first."""
    return await _page(session, manager.organization.id, paging, events)


@router.get(
    "/audit-events",
    response_model=AuditEventPage,
    dependencies=[Depends(require_roles(Role.OWNER)), Depends(get_verified_user)],
)
async def list_events(session: SessionDep, paging: PagingDep, events: FilterDep) -> AuditEventPage:
    """Every event, of every organization and account, newest first: for platform
    owners."""
    return await _page(session, None, paging, events)
