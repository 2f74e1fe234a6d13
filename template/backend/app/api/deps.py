"""Request dependencies, each named once as an `Annotated` alias so that a route reads
as its signature: `async def read_me(user: CurrentUser) -> UserOut`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import BackgroundTasks, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import as_utc
from app.core.config import Settings
from app.core.db import session_scope
from app.core.rate_limit import Throttle
from app.core.security import InvalidTokenError, decode_access_token
from app.models import User
from app.services import user_service
from app.services.storage_service import Storage
from app.worker.queue import JobCall, JobQueue

logger = logging.getLogger("app.auth")

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/login", auto_error=False)

UNAUTHORIZED = HTTPException(
    status_code=status.HTTP_401_UNAUTHORIZED,
    detail="Not authenticated",
    headers={"WWW-Authenticate": "Bearer"},
)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_throttle(request: Request) -> Throttle:
    throttle: Throttle = request.app.state.throttle
    return throttle


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    # `async with`, not `async for` over a generator: an error raised in the route is
    # thrown into this dependency, and must reach the rollback at once.
    async with session_scope(request.app.state.sessionmaker) as session:
        yield session


class Jobs:
    """The job queue, bound to this request: `await jobs.enqueue(send_email_job(...))`."""

    def __init__(self, queue: JobQueue, background: BackgroundTasks) -> None:
        self.queue = queue
        self.background = background

    async def enqueue(self, call: JobCall) -> None:
        await self.queue.enqueue(call, self.background)


def get_jobs(request: Request, background: BackgroundTasks) -> Jobs:
    return Jobs(request.app.state.queue, background)


def get_storage(request: Request) -> Storage:
    storage: Storage | None = request.app.state.storage
    if storage is None:
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="File storage is turned off (STORAGE_BACKEND=none).",
        )
    return storage


SettingsDep = Annotated[Settings, Depends(get_settings)]
# scope="function": the session commits as the route returns, before the response is
# sent, so that a failed commit becomes the answer instead of following a success.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
ThrottleDep = Annotated[Throttle, Depends(get_throttle)]
JobsDep = Annotated[Jobs, Depends(get_jobs)]
StorageDep = Annotated[Storage, Depends(get_storage)]


async def get_current_user(
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> User:
    if token is None:
        raise UNAUTHORIZED
    try:
        claims = decode_access_token(token, settings)
    except InvalidTokenError:
        raise UNAUTHORIZED from None
    # The user, with the role, is read from the database on every request, together
    # with the login the token belongs to, in one query: a deactivation, role change,
    # logout or password change takes effect at once, whatever the token says.
    user = await user_service.active_user_in_session(session, claims.user_id, claims.session_id)
    if user is None:
        raise UNAUTHORIZED
    cutoff = user.tokens_valid_after
    if cutoff is not None and claims.issued_at < as_utc(cutoff).timestamp():
        raise UNAUTHORIZED
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_verified_user(user: CurrentUser) -> User:
    if not user.is_verified:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail="Verify your email address first (POST /api/v1/auth/request-verify).",
        )
    return user


VerifiedUser = Annotated[User, Depends(get_verified_user)]


# OFFSET is a 64-bit integer in PostgreSQL and SQLite: a larger one is refused with a 422
# here rather than by the database with an error.
MAX_OFFSET = 2**63 - 1


def client_address(request: Request) -> str:
    # The address ClientAddressMiddleware (app/core/proxy.py) decided, from the
    # connection or from what the platform's own proxy says; never from a header the
    # client can write.
    return request.client.host if request.client else "unknown"
