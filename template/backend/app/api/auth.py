"""Authentication: registration, login, token refresh and logout, email verification,
password reset and password change.

Access tokens travel in the Authorization header, refresh and one-time tokens in JSON
bodies: none of them ever appears in a URL, where proxies and access logs would keep it.
Links in emails carry their token in the fragment (`#token=`), which browsers do not send
to servers; the web app posts it to /verify or /reset.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from app.api.deps import (
    CurrentUser,
    JobsDep,
    SessionDep,
    SettingsDep,
    ThrottleDep,
    client_address,
)
from app.core.clock import utcnow
from app.core.config import Settings
from app.core.emails import email_problem, normalise_email
from app.core.rate_limit import Throttle
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
from app.services import account_service, token_service, user_service
from app.services.account_service import find_user
from app.worker.jobs import send_account_link_job, send_email_job

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
LOGIN_ACCOUNT = "login-account"


def login_email(username: str) -> str | None:
    """The login form's free-text name as accounts store addresses, or None for what
    cannot be one (over-long, holding a NUL that PostgreSQL would refuse, malformed)."""
    if len(username) > EMAIL_MAX_LENGTH:
        return None
    try:
        return normalise_email(username.strip(), allow_special_use=True)
    except ValueError:
        return None


def token_pair(
    user: User, issued: token_service.IssuedRefreshToken, settings: Settings
) -> TokenPair:
    return TokenPair(
        access_token=create_access_token(user.id, issued.family_id, settings, utcnow()),
        expires_in=settings.ACCESS_TOKEN_MINUTES * 60,
        refresh_token=issued.token,
    )


async def limit_email_requests(
    request: Request, settings: Settings, throttle: Throttle, kind: str, email: str
) -> None:
    # Counted whether or not the account exists, so the limit reveals nothing either.
    await throttle.hit(
        settings.EMAIL_REQUEST_LIMIT_PER_ADDRESS, "email-request", client_address(request)
    )
    await throttle.hit(settings.EMAIL_REQUEST_LIMIT_PER_ACCOUNT, kind, email)


# The same answer whether or not the address belongs to an account.
REGISTERED = Accepted(
    detail="Check your inbox: a message to this address says how to go on from here."
)
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


@router.post("/register", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
async def register(
    body: RegisterIn,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
    jobs: JobsDep,
) -> Accepted:
    """Create a member account and mail it a verification link. An address that has an
    account gets the same answer, and its owner an email saying someone tried."""
    email = body.email
    await limit_email_requests(request, settings, throttle, "register", email)
    # Special-use domains (.test, .localhost, ...) receive no mail: fine while developing,
    # refused in production, as create-owner refuses them.
    problem = email_problem(
        email, allow_special_use=not settings.is_production
    ) or password_problem(body.password, email=email)
    if problem:
        raise unacceptable_password(problem)
    # Hashed in both cases, so that the answer takes as long for a taken address.
    hashed = await hash_password(body.password)
    user = await user_service.create_member(session, email, hashed, body.full_name)
    if user is None:
        existing = await find_user(session, email)
        if existing is not None and existing.is_active:
            notice = account_service.account_exists_email(existing, settings)
            await jobs.enqueue(send_email_job(notice))
        logger.info("Registration for an existing address refused")
    else:
        await jobs.enqueue(
            send_email_job(await account_service.verification_email(session, user, settings))
        )
    return REGISTERED


@router.post("/login", response_model=TokenPair)
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
) -> TokenPair:
    email = login_email(form.username)
    # What is not an address is throttled and logged like any name, looked up as nobody,
    # and so answered the same way.
    name = email or form.username.strip().lower()[:EMAIL_MAX_LENGTH]
    address = client_address(request)
    # Both budgets are spent before the password is looked at, each in one atomic
    # operation: of N guesses sent at once, at most the budget's worth are checked.
    await throttle.hit(settings.LOGIN_LIMIT_PER_ADDRESS, "login-address", address)
    await throttle.hit(settings.LOGIN_LIMIT_PER_ACCOUNT, LOGIN_ACCOUNT, name)
    user = await find_user(session, email) if email else None
    if user is None:
        await burn_password_check(form.password)
        valid, new_hash = False, None
    else:
        valid, new_hash = await verify_password(form.password, user.hashed_password)
    if user is None or not valid or not user.is_active:
        logger.info("Login failed for %s from %s", name, address)
        raise BAD_CREDENTIALS
    if new_hash is not None:
        user.hashed_password = new_hash
    # A successful login gives the account its budget back.
    await throttle.clear(settings.LOGIN_LIMIT_PER_ACCOUNT, LOGIN_ACCOUNT, name)
    logger.info("Login succeeded for user %s from %s", user.id, address)
    response.headers.update(NO_STORE)
    return token_pair(user, await token_service.start_family(session, user.id, settings), settings)


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
    return token_pair(user, issued, settings)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshIn, session: SessionDep) -> None:
    """End the login the refresh token belongs to: its refresh and access tokens stop
    working at once."""
    # Holding the refresh token is what entitles a client to end its session; an
    # unknown token is answered the same way, so logout reveals nothing.
    family = await token_service.family_of(session, body.refresh_token)
    if family is not None:
        await token_service.revoke_family(session, family.id)


@router.post("/request-verify", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
async def request_verify(
    body: EmailIn,
    request: Request,
    settings: SettingsDep,
    throttle: ThrottleDep,
    jobs: JobsDep,
) -> Accepted:
    email = body.email
    await limit_email_requests(request, settings, throttle, "request-verify", email)
    await jobs.enqueue(send_account_link_job(email, TokenPurpose.VERIFY_EMAIL))
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
    settings: SettingsDep,
    throttle: ThrottleDep,
    jobs: JobsDep,
) -> Accepted:
    email = body.email
    await limit_email_requests(request, settings, throttle, "request-reset", email)
    await jobs.enqueue(send_account_link_job(email, TokenPurpose.RESET_PASSWORD))
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
    await jobs.enqueue(send_email_job(account_service.password_changed_email(user)))
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
    # Current passwords are checked against the same budget as logins, spent before the
    # check, so a stolen access token does not open a way to guess the password.
    await throttle.hit(settings.LOGIN_LIMIT_PER_ACCOUNT, LOGIN_ACCOUNT, user.email)
    valid, _ = await verify_password(body.current_password, user.hashed_password)
    if not valid:
        raise HTTPException(
            status_code=status.HTTP_400_BAD_REQUEST,
            detail="The current password is not correct.",
        )
    await throttle.clear(settings.LOGIN_LIMIT_PER_ACCOUNT, LOGIN_ACCOUNT, user.email)
    if body.new_password == body.current_password:
        raise unacceptable_password("The new password must differ from the current one.")
    problem = password_problem(body.new_password, email=user.email)
    if problem:
        raise unacceptable_password(problem)
    await user_service.set_password(session, user, body.new_password)
    await jobs.enqueue(send_email_job(account_service.password_changed_email(user)))
    logger.info("Password changed for user %s", user.id)
    response.headers.update(NO_STORE)
    return token_pair(user, await token_service.start_family(session, user.id, settings), settings)
