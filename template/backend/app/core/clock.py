from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without a zone; every stored datetime is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
