"""Authentication: registration, login, token refresh and logout, email verification,
password reset and password change.

Access tokens travel in the Authorization header, refresh and one-time tokens in JSON
bodies: none of them ever appears in a URL, where proxies and access logs would keep it.
Links in emails carry their token in the fragment (`#token=`), which browsers do not send
to servers; the web app posts it to /verify or /reset.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import (
    CurrentUser,
    Jobs,
    JobsDep,
    SessionDep,
    SettingsDep,
    ThrottleDep,
    client_address,
)
from app.core.clock import utcnow
from app.core.config import Settings
from app.core.rate_limit import RateLimitedError, Throttle
from app.core.security import (
    burn_password_check,
    create_access_token,
    hash_password,
    password_problem,
    verify_password,
)
from app.models import TokenPurpose, User
from app.models.user import EMAIL_MAX_LENGTH
from app.schemas.auth import (
    Accepted,
    ChangePasswordIn,
    EmailIn,
    RefreshIn,
    RegisterIn,
    ResetIn,
    TokenIn,
    TokenPair,
)
from app.schemas.user import UserOut
from app.services import token_service, user_service
from app.services.email_service import Email
from app.worker.jobs import send_email_job

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


async def find_user(session: AsyncSession, email: str) -> User | None:
    return (await session.scalars(select(User).where(User.email == email))).one_or_none()


def token_pair(user: User, refresh_token: str, settings: Settings) -> TokenPair:
    return TokenPair(
        access_token=create_access_token(user.id, settings, utcnow()),
        expires_in=settings.ACCESS_TOKEN_MINUTES * 60,
        refresh_token=refresh_token,
    )


# The web app's pages that links in emails open.
LINK_PAGES = {
    TokenPurpose.VERIFY_EMAIL: "verify-email",
    TokenPurpose.RESET_PASSWORD: "reset-password",
}


async def send_link(
    session: AsyncSession,
    user: User,
    settings: Settings,
    jobs: Jobs,
    purpose: TokenPurpose,
    lifetime: timedelta,
    message: Email,
) -> None:
    """Issue a one-time token and mail `message` with its link as "link" in the context."""
    # Bound to the address the link goes to, so it confirms nothing once that changes.
    token = await token_service.issue_one_time_token(
        session, user.id, purpose, lifetime, email=user.email
    )
    link = f"{settings.FRONTEND_URL.rstrip('/')}/{LINK_PAGES[purpose]}#token={token}"
    await jobs.enqueue(send_email_job(replace(message, context={**message.context, "link": link})))


async def send_verification(
    session: AsyncSession, user: User, settings: Settings, jobs: Jobs
) -> None:
    message = Email(
        to=user.email,
        template="verify_email",
        subject="Confirm your email address",
        context={"valid_hours": settings.VERIFY_TOKEN_HOURS},
    )
    lifetime = timedelta(hours=settings.VERIFY_TOKEN_HOURS)
    await send_link(session, user, settings, jobs, TokenPurpose.VERIFY_EMAIL, lifetime, message)


async def send_password_changed(user: User, jobs: Jobs) -> None:
    email = Email(
        to=user.email,
        template="password_changed",
        subject="Your password was changed",
        context={},
    )
    await jobs.enqueue(send_email_job(email))


async def limit_email_requests(
    request: Request, settings: Settings, throttle: Throttle, kind: str, email: str
) -> None:
    # Counted whether or not the account exists, so the limit reveals nothing either.
    try:
        await throttle.hit(
            settings.EMAIL_REQUEST_LIMIT_PER_ADDRESS, "email-request", client_address(request)
        )
        await throttle.hit(settings.EMAIL_REQUEST_LIMIT_PER_ACCOUNT, kind, email)
    except RateLimitedError as exc:
        raise too_many_requests(exc) from None


# The same answer whether or not the address belongs to an account.
VERIFY_REQUESTED = Accepted(
    detail="If an account with this address awaits verification, a link is on its way."
)
RESET_REQUESTED = Accepted(
    detail="If an account with this address exists, a password reset link is on its way."
)
INVALID_VERIFY_LINK = HTTPException(
    status_code=status.HTTP_400_BAD_REQUEST,
    detail="The verification link is not valid or has expired; ask for a new one.",
)
INVALID_RESET_LINK = HTTPException(
    status_code=status.HTTP_400_BAD_REQUEST,
    detail="The password reset link is not valid or has expired; ask for a new one.",
)


def unacceptable_password(problem: str) -> HTTPException:
    return HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, detail=problem)


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserOut)
async def register(
    body: RegisterIn,
    session: SessionDep,
    settings: SettingsDep,
    jobs: JobsDep,
) -> User:
    email = normalise_email(body.email)
    problem = password_problem(body.password, email=email)
    if problem:
        raise unacceptable_password(problem)
    user = User(
        email=email,
        hashed_password=await hash_password(body.password),
        full_name=body.full_name,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail="An account with this email exists; log in or reset its password.",
        ) from None
    await send_verification(session, user, settings, jobs)
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
    # The form field is free text: what cannot be an address (over-long, or holding a NUL
    # that PostgreSQL would refuse) is looked up as nobody, and answered the same way.
    plausible = len(email) <= EMAIL_MAX_LENGTH and "\x00" not in email
    user = await find_user(session, email) if plausible else None
    if user is None:
        await burn_password_check(form.password)
        valid, new_hash = False, None
    else:
        valid, new_hash = await verify_password(form.password, user.hashed_password)
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


@router.post("/request-verify", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
async def request_verify(
    body: EmailIn,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
    jobs: JobsDep,
) -> Accepted:
    email = normalise_email(body.email)
    await limit_email_requests(request, settings, throttle, "request-verify", email)
    user = await find_user(session, email)
    if user is not None and user.is_active and not user.is_verified:
        await send_verification(session, user, settings, jobs)
    return VERIFY_REQUESTED


@router.post("/verify", status_code=status.HTTP_204_NO_CONTENT)
async def verify(body: TokenIn, session: SessionDep) -> None:
    record = await token_service.consume_one_time_token(
        session, body.token, TokenPurpose.VERIFY_EMAIL
    )
    if record is None:
        raise INVALID_VERIFY_LINK
    user = await session.get(User, record.user_id)
    # The link confirms the address it was sent to: if the account's address has
    # changed since, it confirms nothing.
    if user is None or not user.is_active or record.email != user.email:
        raise INVALID_VERIFY_LINK
    user.is_verified = True
    await token_service.void_one_time_tokens(session, user.id, TokenPurpose.VERIFY_EMAIL)
    logger.info("Email verified for user %s", user.id)


@router.post("/request-reset", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
async def request_reset(
    body: EmailIn,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
    jobs: JobsDep,
) -> Accepted:
    email = normalise_email(body.email)
    await limit_email_requests(request, settings, throttle, "request-reset", email)
    user = await find_user(session, email)
    if user is not None and user.is_active:
        message = Email(
            to=user.email,
            template="reset_password",
            subject="Reset your password",
            context={"valid_minutes": settings.RESET_TOKEN_MINUTES},
        )
        lifetime = timedelta(minutes=settings.RESET_TOKEN_MINUTES)
        await send_link(
            session, user, settings, jobs, TokenPurpose.RESET_PASSWORD, lifetime, message
        )
    return RESET_REQUESTED


@router.post("/reset", status_code=status.HTTP_204_NO_CONTENT)
async def reset(body: ResetIn, session: SessionDep, jobs: JobsDep) -> None:
    # The token is looked at before it is spent, so that a password refused for being
    # weak leaves the link usable for a second try.
    pending = await token_service.find_one_time_token(
        session, body.token, TokenPurpose.RESET_PASSWORD
    )
    user = await session.get(User, pending.user_id) if pending else None
    if pending is None or user is None or not user.is_active or pending.email != user.email:
        raise INVALID_RESET_LINK
    problem = password_problem(body.new_password, email=user.email)
    if problem:
        raise unacceptable_password(problem)
    if (
        await token_service.consume_one_time_token(session, body.token, TokenPurpose.RESET_PASSWORD)
        is None
    ):
        raise INVALID_RESET_LINK
    await user_service.set_password(session, user, body.new_password)
    # Opening the link proved the address is the user's.
    user.is_verified = True
    await send_password_changed(user, jobs)
    logger.info("Password reset for user %s", user.id)


@router.post("/change-password", response_model=TokenPair)
async def change_password(
    body: ChangePasswordIn,
    user: CurrentUser,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
    jobs: JobsDep,
) -> TokenPair:
    """Change the password, sign out every session, and return tokens for this one."""
    # Wrong current passwords count against the same budget as failed logins, so a
    # stolen access token does not open a way to guess the password.
    try:
        await throttle.check(settings.LOGIN_LIMIT_PER_ACCOUNT, "login-account", user.email)
    except RateLimitedError as exc:
        raise too_many_requests(exc) from None
    valid, _ = await verify_password(body.current_password, user.hashed_password)
    if not valid:
        await throttle.hit(settings.LOGIN_LIMIT_PER_ACCOUNT, "login-account", user.email)
        raise HTTPException(
            status_code=status.HTTP_400_BAD_REQUEST,
            detail="The current password is not correct.",
        )
    if body.new_password == body.current_password:
        raise unacceptable_password("The new password must differ from the current one.")
    problem = password_problem(body.new_password, email=user.email)
    if problem:
        raise unacceptable_password(problem)
    await user_service.set_password(session, user, body.new_password)
    await send_password_changed(user, jobs)
    logger.info("Password changed for user %s", user.id)
    response.headers.update(NO_STORE)
    family = await token_service.start_family(session, user.id, settings)
    return token_pair(user, family.token, settings)
