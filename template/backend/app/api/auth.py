"""Authentication: registration, login, token refresh and logout."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import (
    SessionDep,
    SettingsDep,
    ThrottleDep,
    client_address,
)
from app.core.clock import utcnow
from app.core.config import Settings
from app.core.rate_limit import RateLimitedError
from app.core.security import (
    burn_password_check,
    create_access_token,
    hash_password,
    password_problem,
    verify_password,
)
from app.models import TokenPurpose, User
from app.schemas.auth import RefreshIn, RegisterIn, TokenPair
from app.schemas.user import UserOut
from app.services import token_service
from app.services.email_service import Email, send_email

router = APIRouter(prefix="/auth", tags=["auth"])
logger = logging.getLogger("app.auth")

# One answer for an unknown email, a wrong password and a deactivated account, so that
# login does not reveal which accounts exist.
BAD_CREDENTIALS = HTTPException(
    status_code=status.HTTP_401_UNAUTHORIZED,
    detail="Incorrect email or password.",
    headers={"WWW-Authenticate": "Bearer"},
)
INVALID_REFRESH_TOKEN = HTTPException(
    status_code=status.HTTP_401_UNAUTHORIZED, detail="The refresh token is not valid."
)
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def too_many_requests(exc: RateLimitedError) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        detail=f"Too many attempts; try again in {exc.retry_after} seconds.",
        headers={"Retry-After": str(exc.retry_after)},
    )


def normalise_email(email: str) -> str:
    return email.strip().lower()


def token_pair(user: User, refresh_token: str, settings: Settings) -> TokenPair:
    return TokenPair(
        access_token=create_access_token(user.id, settings, utcnow()),
        expires_in=settings.ACCESS_TOKEN_MINUTES * 60,
        refresh_token=refresh_token,
    )


async def send_verification(
    session: AsyncSession, user: User, settings: Settings, background: BackgroundTasks
) -> None:
    token = await token_service.issue_one_time_token(
        session,
        user.id,
        TokenPurpose.VERIFY_EMAIL,
        timedelta(hours=settings.VERIFY_TOKEN_HOURS),
        email=user.email,
    )
    # The token travels in the fragment, which browsers never send to a server, so it
    # stays out of access logs and Referer headers.
    link = f"{settings.FRONTEND_URL.rstrip('/')}/verify-email#token={token}"
    email = Email(
        to=user.email,
        template="verify_email",
        subject="Confirm your email address",
        context={"link": link, "valid_hours": settings.VERIFY_TOKEN_HOURS},
    )
    background.add_task(send_email, email, settings)


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserOut)
async def register(
    body: RegisterIn,
    session: SessionDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> User:
    email = normalise_email(body.email)
    problem = password_problem(body.password, email=email)
    if problem:
        raise HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, detail=problem)
    user = User(email=email, hashed_password=hash_password(body.password), full_name=body.full_name)
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail="An account with this email exists; log in or reset its password.",
        ) from None
    await send_verification(session, user, settings, background)
    await session.refresh(user)
    return user


@router.post("/login", response_model=TokenPair)
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
) -> TokenPair:
    email = normalise_email(form.username)
    address = client_address(request)
    try:
        await throttle.hit(settings.LOGIN_LIMIT_PER_ADDRESS, "login-address", address)
        await throttle.check(settings.LOGIN_LIMIT_PER_ACCOUNT, "login-account", email)
    except RateLimitedError as exc:
        logger.warning("Login throttled for account %s from %s", email, address)
        raise too_many_requests(exc) from None
    user = (await session.scalars(select(User).where(User.email == email))).one_or_none()
    if user is None:
        burn_password_check(form.password)
        valid, new_hash = False, None
    else:
        valid, new_hash = verify_password(form.password, user.hashed_password)
    if user is None or not valid or not user.is_active:
        await throttle.hit(settings.LOGIN_LIMIT_PER_ACCOUNT, "login-account", email)
        logger.info("Login failed for %s from %s", email, address)
        raise BAD_CREDENTIALS
    if new_hash is not None:
        user.hashed_password = new_hash
    await throttle.clear(settings.LOGIN_LIMIT_PER_ACCOUNT, "login-account", email)
    logger.info("Login succeeded for user %s from %s", user.id, address)
    response.headers.update(NO_STORE)
    family = await token_service.start_family(session, user.id, settings)
    return token_pair(user, family.token, settings)


@router.post("/refresh", response_model=TokenPair)
async def refresh(
    body: RefreshIn, response: Response, session: SessionDep, settings: SettingsDep
) -> TokenPair:
    try:
        issued = await token_service.rotate(session, body.refresh_token)
    except token_service.RefreshRejectedError:
        raise INVALID_REFRESH_TOKEN from None
    user = await session.get(User, issued.user_id)
    if user is None or not user.is_active:
        raise INVALID_REFRESH_TOKEN
    response.headers.update(NO_STORE)
    return token_pair(user, issued.token, settings)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshIn, session: SessionDep) -> None:
    # Holding the refresh token is what entitles a client to end its session; an
    # unknown token is answered the same way, so logout reveals nothing.
    family = await token_service.family_of(session, body.refresh_token)
    if family is not None:
        await token_service.revoke_family(session, family.id)
