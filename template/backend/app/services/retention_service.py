"""What is kept for a time only: audit events older than AUDIT_RETENTION_DAYS and
invitations past their expiry are deleted by the periodic `prune` job (the worker's
keeper queues it every PRUNE_INTERVAL_SECONDS; `python -m app.cli prune` runs it now).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import utcnow
from app.core.config import Settings
from app.core.job_runtime import JobRuntime, job_runtime
from app.core.queue import JobCall
from app.services import audit_service, invitation_service

logger = logging.getLogger(__name__)

PRUNE_INTERVAL_SECONDS = 3600


@dataclass(frozen=True)
class Pruned:
    audit_events: int
    invitations: int


async def prune(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, *, now: datetime
) -> Pruned:
    """Delete what is past keeping, in batches of one transaction each: a first run on a
    long log holds no lock for long, and one interrupted keeps what it has done."""
    before = now - timedelta(days=settings.AUDIT_RETENTION_DAYS)
    events = 0
    while True:
        async with sessionmaker.begin() as session:
            removed = await audit_service.prune(session, before)
        events += removed
        if removed < audit_service.PRUNE_BATCH:
            break
    async with sessionmaker.begin() as session:
        invitations = await invitation_service.purge_expired(session, now)
    return Pruned(audit_events=events, invitations=invitations)


async def prune_with(runtime: JobRuntime) -> Pruned:
    return await prune(runtime.sessionmaker, runtime.settings, now=utcnow())


def prune_now() -> None:
    """The periodic job."""
    runtime = job_runtime()
    pruned = runtime.run(prune_with(runtime))
    logger.info(
        "Pruned %d audit event(s) older than %d days and %d expired invitation(s)",
        pruned.audit_events,
        runtime.settings.AUDIT_RETENTION_DAYS,
        pruned.invitations,
    )


def prune_job() -> JobCall:
    return JobCall(prune_now, (), description="prune", retry=False)
