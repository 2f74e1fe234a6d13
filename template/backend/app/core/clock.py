from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without a zone; every stored datetime is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def to_millisecond(moment: datetime) -> datetime:
    """Drop the sub-millisecond part, the precision of an access token's `iat`."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
