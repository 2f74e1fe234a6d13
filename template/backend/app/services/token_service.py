"""Refresh token families and one-time tokens, following RFC 9700's rotation rules.

Every exchange of a refresh token marks it used in one conditional UPDATE: of two
concurrent exchanges, the database lets exactly one match. A token presented after it
was used means it leaked, so the whole family (that login) is revoked.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import as_utc, utcnow
from app.core.config import Settings
from app.core.security import digest, new_opaque_token
from app.models import AuditType, OneTimeToken, RefreshToken, RefreshTokenFamily, TokenPurpose
from app.models.audit import TargetType
from app.services import audit_service

logger = logging.getLogger("app.auth")


class RefreshRejectedError(Exception):
    """The refresh token is unknown, used, revoked or expired."""


@dataclass(frozen=True)
class IssuedRefreshToken:
    token: str
    family_id: uuid.UUID
    user_id: uuid.UUID


def _rowcount(result: Result[Any]) -> int:
    return cast("CursorResult[Any]", result).rowcount


async def start_family(
    session: AsyncSession, user_id: uuid.UUID, settings: Settings
) -> IssuedRefreshToken:
    now = utcnow()
    family = RefreshTokenFamily(
        user_id=user_id,
        created_at=now,
        expires_at=now + timedelta(days=settings.REFRESH_TOKEN_DAYS),
    )
    session.add(family)
    await session.flush()
    return await _add_token(session, family)


async def _add_token(session: AsyncSession, family: RefreshTokenFamily) -> IssuedRefreshToken:
    token = new_opaque_token()
    session.add(RefreshToken(token_hash=digest(token), family_id=family.id))
    await session.flush()
    return IssuedRefreshToken(token=token, family_id=family.id, user_id=family.user_id)


async def rotate(session: AsyncSession, token: str) -> IssuedRefreshToken:
    """Exchange a refresh token for a new one in the same family, or raise."""
    token_hash = digest(token)
    now = utcnow()
    # The claim comes first: the conditional UPDATE locks the row, so of two concurrent
    # exchanges exactly one matches, and the other then sees the token as used.
    claimed = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == token_hash, RefreshToken.used_at.is_(None))
        .values(used_at=now)
    )
    family = await family_of(session, token)
    if family is None:
        raise RefreshRejectedError
    if _rowcount(claimed) != 1:
        await revoke_family(session, family.id)
        audit_service.record(
            session,
            AuditType.REFRESH_TOKEN_REUSED,
            None,
            target=(TargetType.USER, family.user_id),
            details={"session_id": str(family.id)},
        )
        await session.commit()
        logger.warning(
            "Refresh token reuse: family %s of user %s revoked", family.id, family.user_id
        )
        raise RefreshRejectedError
    if family.revoked_at is not None or as_utc(family.expires_at) <= now:
        raise RefreshRejectedError
    return await _add_token(session, family)


async def family_of(session: AsyncSession, token: str) -> RefreshTokenFamily | None:
    record = await session.get(RefreshToken, digest(token))
    if record is None:
        return None
    return await session.get(RefreshTokenFamily, record.family_id)


async def revoke_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshTokenFamily)
        .where(RefreshTokenFamily.id == family_id, RefreshTokenFamily.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def revoke_all_families(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshTokenFamily)
        .where(RefreshTokenFamily.user_id == user_id, RefreshTokenFamily.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def issue_one_time_token(
    session: AsyncSession,
    user_id: uuid.UUID,
    purpose: TokenPurpose,
    lifetime: timedelta,
    email: str | None = None,
) -> str:
    token = new_opaque_token()
    now = utcnow()
    session.add(
        OneTimeToken(
            token_hash=digest(token),
            user_id=user_id,
            purpose=purpose,
            email=email,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    await session.flush()
    return token


async def find_one_time_token(
    session: AsyncSession, token: str, purpose: TokenPurpose
) -> OneTimeToken | None:
    """The token's record when it is valid now (unused, unexpired, of this purpose)."""
    return (
        await session.scalars(
            select(OneTimeToken).where(
                OneTimeToken.token_hash == digest(token),
                OneTimeToken.purpose == purpose,
                OneTimeToken.used_at.is_(None),
                OneTimeToken.expires_at > utcnow(),
            )
        )
    ).one_or_none()


async def consume_one_time_token(
    session: AsyncSession, token: str, purpose: TokenPurpose
) -> OneTimeToken | None:
    """Mark a valid token used and return it; None when unknown, used, expired or of
    another purpose. The conditional UPDATE makes a second use fail even concurrently."""
    token_hash = digest(token)
    now = utcnow()
    claimed = await session.execute(
        update(OneTimeToken)
        .where(
            OneTimeToken.token_hash == token_hash,
            OneTimeToken.purpose == purpose,
            OneTimeToken.used_at.is_(None),
            OneTimeToken.expires_at > now,
        )
        .values(used_at=now)
        # SQLite returns datetimes without a zone, which Python cannot compare with
        # `now`; "fetch" asks the database which rows matched instead of evaluating the
        # condition on objects already loaded in the session.
        .execution_options(synchronize_session="fetch")
    )
    if _rowcount(claimed) != 1:
        return None
    return (
        await session.scalars(select(OneTimeToken).where(OneTimeToken.token_hash == token_hash))
    ).one()


async def void_one_time_tokens(
    session: AsyncSession, user_id: uuid.UUID, purpose: TokenPurpose, now: datetime | None = None
) -> None:
    await session.execute(
        update(OneTimeToken)
        .where(
            OneTimeToken.user_id == user_id,
            OneTimeToken.purpose == purpose,
            OneTimeToken.used_at.is_(None),
        )
        .values(used_at=now or utcnow())
    )
