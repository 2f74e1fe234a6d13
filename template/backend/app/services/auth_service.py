"""Signing in and the account flows: register, login, refresh, logout, verify, reset and
change-password, with their throttles and their emails.

The routes in app/api/auth.py only carry these over HTTP, and the CLI reuses them. A
flow that refuses raises an AppError subclass, which says the answer.

Requests that must not reveal whether an address has an account answer alike, and take
as long, for every address: register hashes the password either way, and request-verify
and request-reset queue a job (account_service.send_account_link_job) that looks the
address up after the answer has gone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.config import Settings
from app.core.emails import email_problem, normalise_email
from app.core.errors import AppError, raises
from app.core.metrics import LOGIN_FAILURES
from app.core.queue import Jobs, QueueUnavailableError
from app.core.rate_limit import RateLimitedError, Throttle
from app.core.security import (
    burn_password_check,
    create_access_token,
    hash_password,
    password_problem,
    verify_password,
)
from app.models import AuditType, TokenPurpose, User
from app.models.audit import TargetType
from app.models.user import EMAIL_MAX_LENGTH
from app.services import (
    account_service,
    audit_service,
    organization_service,
    token_service,
    user_service,
)
from app.services.account_service import find_user
from app.services.email_service import send_email_job

logger = logging.getLogger("app.auth")

LOGIN_ACCOUNT = "login-account"


class BadCredentialsError(AppError):
    """One answer for an unknown email, a wrong password and a deactivated account, so
    that login does not reveal which accounts exist."""

    status_code = 401
    header_names = ("WWW-Authenticate",)

    def __init__(self) -> None:
        super().__init__("Incorrect email or password.", headers={"WWW-Authenticate": "Bearer"})


class InvalidRefreshTokenError(AppError):
    """The refresh token is unknown, used, revoked or expired."""

    status_code = 401

    def __init__(self) -> None:
        super().__init__("The refresh token is not valid.")


class InvalidLinkError(AppError):
    """A verification or reset token that is unknown, spent, expired or no longer for the
    account's address."""

    status_code = 400


class UnacceptableInputError(AppError):
    """A new password, or at registration an address, that the rules refuse."""

    status_code = 422


class WrongPasswordError(AppError):
    """The current password given (to change it, or to create an API key) is not the account's."""

    status_code = 400

    def __init__(self) -> None:
        super().__init__("The current password is not correct.")


INVALID_VERIFY_LINK = "The verification link is not valid or has expired; ask for a new one."
INVALID_RESET_LINK = "The password reset link is not valid or has expired; ask for a new one."
# Which emails request_link sends, by the route's name for the kind of request.
LINK_REQUESTS = {
    TokenPurpose.VERIFY_EMAIL: "request-verify",
    TokenPurpose.RESET_PASSWORD: "request-reset",
}


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: int  # seconds the access token lives


def login_email(username: str) -> str | None:
    """The login form's free-text name as accounts store addresses, or None for what
    cannot be one (over-long, holding a NUL that PostgreSQL would refuse, malformed)."""
    if len(username) > EMAIL_MAX_LENGTH:
        return None
    try:
        return normalise_email(username.strip(), allow_special_use=True)
    except ValueError:
        return None


def _tokens(user: User, issued: token_service.IssuedRefreshToken, settings: Settings) -> Tokens:
    return Tokens(
        access_token=create_access_token(user.id, issued.family_id, settings, utcnow()),
        refresh_token=issued.token,
        expires_in=settings.ACCESS_TOKEN_MINUTES * 60,
    )


async def _limit_email_requests(
    settings: Settings, throttle: Throttle, kind: str, client: str, email: str
) -> None:
    # Counted whether or not the account exists, so the limit reveals nothing either.
    await throttle.hit(settings.EMAIL_REQUEST_LIMIT_PER_ADDRESS, "email-request", client)
    await throttle.hit(settings.EMAIL_REQUEST_LIMIT_PER_ACCOUNT, kind, email)


def _check_new_password(password: str, email: str) -> None:
    problem = password_problem(password, email=email)
    if problem:
        raise UnacceptableInputError(problem)


@raises(UnacceptableInputError, RateLimitedError, QueueUnavailableError)
async def register(
    session: AsyncSession,
    settings: Settings,
    throttle: Throttle,
    jobs: Jobs,
    *,
    client: str,
    email: str,
    password: str,
    full_name: str | None,
) -> None:
    """Create a member account and mail it a verification link. An address that has an
    account gets the same answer, and its owner an email saying someone tried."""
    await _limit_email_requests(settings, throttle, "register", client, email)
    # Special-use domains (.test, .localhost, ...) receive no mail: fine while developing,
    # refused in production, as create-owner refuses them.
    problem = email_problem(email, allow_special_use=not settings.is_production)
    if problem:
        raise UnacceptableInputError(problem)
    _check_new_password(password, email)
    # Hashed in both cases, so that the answer takes as long for a taken address.
    hashed = await hash_password(password)
    user = await user_service.create_member(session, email, hashed, full_name)
    if user is None:
        existing = await find_user(session, email)
        if existing is not None and existing.is_active:
            notice = account_service.account_exists_email(existing, settings)
            await jobs.enqueue(send_email_job(notice))
        logger.info("Registration for an existing address refused")
        return
    audit_service.record(
        session,
        AuditType.USER_REGISTERED,
        user,
        target=(TargetType.USER, user.id),
        details={"role": user.role.value},
    )
    await organization_service.create_personal(session, user)
    message = await account_service.verification_email(session, user, settings)
    await jobs.enqueue(send_email_job(message))


@raises(BadCredentialsError, RateLimitedError)
async def login(
    session: AsyncSession,
    settings: Settings,
    throttle: Throttle,
    *,
    client: str,
    username: str,
    password: str,
) -> Tokens:
    email = login_email(username)
    # What is not an address is throttled and logged like any name, looked up as nobody,
    # and so answered the same way.
    name = email or username.strip().lower()[:EMAIL_MAX_LENGTH]
    # Both budgets are spent before the password is looked at, each in one atomic
    # operation: of N guesses sent at once, at most the budget's worth are checked.
    await throttle.hit(settings.LOGIN_LIMIT_PER_ADDRESS, "login-address", client)
    await throttle.hit(settings.LOGIN_LIMIT_PER_ACCOUNT, LOGIN_ACCOUNT, name)
    user = await find_user(session, email) if email else None
    if user is None:
        await burn_password_check(password)
        valid, new_hash = False, None
    else:
        valid, new_hash = await verify_password(password, user.hashed_password)
    if user is None or not valid or not user.is_active:
        reason = _failure(user, valid=valid)
        LOGIN_FAILURES.labels(reason).inc()
        # Not the typed name: it may be a password typed into the wrong field.
        logger.info(
            "Login failed (%s) from %s",
            reason,
            client,
            extra={"user_id": str(user.id)} if user else None,
        )
        audit_service.record(
            session,
            AuditType.LOGIN_FAILED,
            None,
            target=(TargetType.USER, user.id) if user else None,
            # The name only when it is an address: what else is typed there may be a
            # password in the wrong field.
            details={"email": email, "reason": reason},
        )
        # Kept although the login fails: the answer's rollback must not take it along.
        await session.commit()
        raise BadCredentialsError
    if new_hash is not None:
        user.hashed_password = new_hash
    # A successful login gives the account its budget back.
    await throttle.clear(settings.LOGIN_LIMIT_PER_ACCOUNT, LOGIN_ACCOUNT, name)
    logger.info("Login succeeded for user %s from %s", user.id, client)
    issued = await token_service.start_family(session, user.id, settings)
    audit_service.record(
        session,
        AuditType.LOGIN_SUCCEEDED,
        user,
        target=(TargetType.USER, user.id),
        details={"session_id": str(issued.family_id)},
    )
    return _tokens(user, issued, settings)


def _failure(user: User | None, *, valid: bool) -> str:
    if user is None:
        return "unknown account"
    return "wrong password" if not valid else "account deactivated"


@raises(InvalidRefreshTokenError)
async def refresh(session: AsyncSession, settings: Settings, refresh_token: str) -> Tokens:
    try:
        issued = await token_service.rotate(session, refresh_token)
    except token_service.RefreshRejectedError:
        raise InvalidRefreshTokenError from None
    user = await session.get(User, issued.user_id)
    if user is None or not user.is_active:
        raise InvalidRefreshTokenError
    return _tokens(user, issued, settings)


async def logout(session: AsyncSession, refresh_token: str) -> None:
    """End the login the refresh token belongs to: its refresh and access tokens stop
    working at once."""
    # Holding the refresh token is what entitles a client to end its session; an
    # unknown token is answered the same way, so logout reveals nothing.
    family = await token_service.family_of(session, refresh_token)
    if family is not None:
        await token_service.revoke_family(session, family.id)
        audit_service.record(
            session,
            AuditType.LOGOUT,
            family.user_id,
            target=(TargetType.USER, family.user_id),
            details={"session_id": str(family.id)},
        )


@raises(RateLimitedError, QueueUnavailableError)
async def request_link(
    settings: Settings,
    throttle: Throttle,
    jobs: Jobs,
    *,
    client: str,
    email: str,
    purpose: TokenPurpose,
) -> None:
    """Queue a verification or reset link for `email`; the job decides whether it is
    owed one."""
    await _limit_email_requests(settings, throttle, LINK_REQUESTS[purpose], client, email)
    await jobs.enqueue(account_service.send_account_link_job(email, purpose))


@raises(InvalidLinkError)
async def verify(session: AsyncSession, token: str) -> None:
    record = await token_service.consume_one_time_token(session, token, TokenPurpose.VERIFY_EMAIL)
    if record is None:
        raise InvalidLinkError(INVALID_VERIFY_LINK)
    user = await session.get(User, record.user_id)
    # The link confirms the address it was sent to: if the account's address has
    # changed since, it confirms nothing.
    if user is None or not user.is_active or record.email != user.email:
        raise InvalidLinkError(INVALID_VERIFY_LINK)
    user.is_verified = True
    await token_service.void_one_time_tokens(session, user.id, TokenPurpose.VERIFY_EMAIL)
    audit_service.record(
        session,
        AuditType.EMAIL_VERIFIED,
        user,
        target=(TargetType.USER, user.id),
        details={"email": user.email},
    )
    logger.info("Email verified for user %s", user.id)


@raises(InvalidLinkError, UnacceptableInputError, QueueUnavailableError)
async def reset(session: AsyncSession, jobs: Jobs, *, token: str, new_password: str) -> None:
    # The token is looked at before it is spent, so that a password refused for being
    # weak leaves the link usable for a second try.
    pending = await token_service.find_one_time_token(session, token, TokenPurpose.RESET_PASSWORD)
    user = await session.get(User, pending.user_id) if pending else None
    if pending is None or user is None or not user.is_active or pending.email != user.email:
        raise InvalidLinkError(INVALID_RESET_LINK)
    _check_new_password(new_password, user.email)
    spent = await token_service.consume_one_time_token(session, token, TokenPurpose.RESET_PASSWORD)
    if spent is None:
        raise InvalidLinkError(INVALID_RESET_LINK)
    await user_service.set_password(session, user, new_password)
    # Opening the link proved the address is the user's.
    user.is_verified = True
    await jobs.enqueue(send_email_job(account_service.password_changed_email(user)))
    audit_service.record(session, AuditType.PASSWORD_RESET, user, target=(TargetType.USER, user.id))
    logger.info("Password reset for user %s", user.id)


@raises(WrongPasswordError, RateLimitedError)
async def confirm_password(
    session: AsyncSession, settings: Settings, throttle: Throttle, user: User, current_password: str
) -> None:
    """Check the signed-in user's password again, before what a stolen access token must
    not do alone (change the password, create an API key). Checked against the same
    budget as logins, spent before the check, so that such a token opens no way to guess
    the password."""
    await throttle.hit(settings.LOGIN_LIMIT_PER_ACCOUNT, LOGIN_ACCOUNT, user.email)
    valid, _ = await verify_password(current_password, user.hashed_password)
    if not valid:
        # Someone signed in as the user does not know the password: a stolen token, maybe.
        audit_service.record(
            session,
            AuditType.PASSWORD_CONFIRMATION_FAILED,
            user,
            target=(TargetType.USER, user.id),
        )
        await session.commit()
        raise WrongPasswordError
    await throttle.clear(settings.LOGIN_LIMIT_PER_ACCOUNT, LOGIN_ACCOUNT, user.email)


@raises(WrongPasswordError, UnacceptableInputError, RateLimitedError, QueueUnavailableError)
async def change_password(
    session: AsyncSession,
    settings: Settings,
    throttle: Throttle,
    jobs: Jobs,
    user: User,
    *,
    current_password: str,
    new_password: str,
) -> Tokens:
    """Change the password, sign out every session, and return tokens for a new one."""
    await confirm_password(session, settings, throttle, user, current_password)
    if new_password == current_password:
        raise UnacceptableInputError("The new password must differ from the current one.")
    _check_new_password(new_password, user.email)
    await user_service.set_password(session, user, new_password)
    await jobs.enqueue(send_email_job(account_service.password_changed_email(user)))
    audit_service.record(
        session, AuditType.PASSWORD_CHANGED, user, target=(TargetType.USER, user.id)
    )
    logger.info("Password changed for user %s", user.id)
    return _tokens(user, await token_service.start_family(session, user.id, settings), settings)
