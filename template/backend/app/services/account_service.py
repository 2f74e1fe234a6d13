"""Account emails: what each one says, and the one-time links they carry.

Requests that must not reveal whether an address has an account (request-verify,
request-reset) do no account work themselves: they queue `send_account_link`, and the
job looks the address up. So the answer, and the time it takes, are the same for every
address.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.job_runtime import JobRuntime, job_runtime
from app.core.queue import EMAIL_QUEUE, JobCall, done_before, mark_done
from app.models import TokenPurpose, User
from app.services import token_service
from app.services.email_service import Email, send_email

logger = logging.getLogger(__name__)

# The web app's pages that links in emails open.
LINK_PAGES = {
    TokenPurpose.VERIFY_EMAIL: "verify-email",
    TokenPurpose.RESET_PASSWORD: "reset-password",
}
# Where the API serves pages of the same names itself (app/api/dev_pages.py), for
# development without a web app: FRONTEND_URL unset, outside production.
DEV_PAGES_PREFIX = "/dev"
# Addresses a server listening on every interface is reached at from this machine.
ANY_INTERFACE = {"0.0.0.0", "::", ""}  # noqa: S104 - compared against, never bound


def uses_dev_pages(settings: Settings) -> bool:
    return settings.FRONTEND_URL is None and not settings.is_production


def api_address(settings: Settings) -> str:
    """The API on this machine, as HOST and PORT say: links a developer opens locally."""
    host = "localhost" if settings.HOST in ANY_INTERFACE else settings.HOST
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.PORT}"


def link_base(settings: Settings) -> str:
    """Where links in emails point: FRONTEND_URL, or the API's own pages without one
    (production refuses to start without FRONTEND_URL)."""
    if settings.FRONTEND_URL:
        return settings.FRONTEND_URL.rstrip("/")
    return api_address(settings) + DEV_PAGES_PREFIX


async def find_user(session: AsyncSession, email: str) -> User | None:
    return (await session.scalars(select(User).where(User.email == email))).one_or_none()


async def _link(
    session: AsyncSession,
    user: User,
    purpose: TokenPurpose,
    lifetime: timedelta,
    settings: Settings,
) -> str:
    # Bound to the address the link goes to, so it confirms nothing once that changes.
    token = await token_service.issue_one_time_token(
        session, user.id, purpose, lifetime, email=user.email
    )
    return f"{link_base(settings)}/{LINK_PAGES[purpose]}#token={token}"


async def verification_email(session: AsyncSession, user: User, settings: Settings) -> Email:
    lifetime = timedelta(hours=settings.VERIFY_TOKEN_HOURS)
    return Email(
        to=user.email,
        template="verify_email",
        subject="Confirm your email address",
        context={
            "valid_hours": settings.VERIFY_TOKEN_HOURS,
            "link": await _link(session, user, TokenPurpose.VERIFY_EMAIL, lifetime, settings),
        },
    )


async def reset_email(session: AsyncSession, user: User, settings: Settings) -> Email:
    lifetime = timedelta(minutes=settings.RESET_TOKEN_MINUTES)
    return Email(
        to=user.email,
        template="reset_password",
        subject="Reset your password",
        context={
            "valid_minutes": settings.RESET_TOKEN_MINUTES,
            "link": await _link(session, user, TokenPurpose.RESET_PASSWORD, lifetime, settings),
        },
    )


def account_exists_email(user: User, settings: Settings) -> Email:
    """To the owner of an address someone tried to register again."""
    return Email(
        to=user.email,
        template="account_exists",
        subject="Someone tried to sign up with your address",
        # Without a web app, the interactive docs are where a developer signs in.
        context={
            "login_url": settings.FRONTEND_URL.rstrip("/")
            if settings.FRONTEND_URL
            else f"{api_address(settings)}/docs"
        },
    )


def password_changed_email(user: User) -> Email:
    return Email(
        to=user.email, template="password_changed", subject="Your password was changed", context={}
    )


async def link_email(
    session: AsyncSession, email: str, purpose: TokenPurpose, settings: Settings
) -> Email | None:
    """The email a request-verify or request-reset for `email` sends, if any: only an
    active account gets one, and a verification link only while it is unverified."""
    user = await find_user(session, email)
    if user is None or not user.is_active:
        return None
    if purpose is TokenPurpose.RESET_PASSWORD:
        return await reset_email(session, user, settings)
    if user.is_verified:
        return None
    return await verification_email(session, user, settings)


def send_account_link(email: str, purpose: str) -> None:
    """The job: look the address up and mail it a verification or reset link, if it is
    owed one."""
    if done_before():
        logger.info("The %s link was sent by an earlier run of its job", purpose)
        return
    runtime = job_runtime()
    runtime.run(_send_account_link(email, TokenPurpose(purpose), runtime))
    mark_done()


def send_account_link_job(email: str, purpose: TokenPurpose) -> JobCall:
    return JobCall(
        send_account_link,
        (email, purpose.value),
        description=f"send_account_link {purpose.value}",
        queue=EMAIL_QUEUE,
    )


async def _send_account_link(email: str, purpose: TokenPurpose, runtime: JobRuntime) -> None:
    settings = runtime.settings
    async with runtime.sessionmaker.begin() as session:
        message = await link_email(session, email, purpose, settings)
    # Sent after the commit, so that the link's token exists when it is opened.
    if message is not None:
        send_email(message, settings)
