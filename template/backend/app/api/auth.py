"""Authentication: registration, login, token refresh and logout, email verification,
password reset and password change.

Access tokens travel in the Authorization header, refresh and one-time tokens in JSON
bodies: none of them ever appears in a URL, where proxies and access logs would keep it.
Links in emails carry their token in the fragment (`#token=`), which browsers do not send
to servers; the web app posts it to /verify or /reset.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from app.api.deps import (
    CurrentUser,
    JobsDep,
    SessionDep,
    SettingsDep,
    ThrottleDep,
    client_address,
)
from app.core.errors import raises
from app.models import TokenPurpose
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
from app.services import auth_service

router = APIRouter(prefix="/auth", tags=["auth"])

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
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


def token_pair(tokens: auth_service.Tokens, response: Response) -> TokenPair:
    # Tokens are secrets: no cache on the way keeps the answer.
    response.headers.update(NO_STORE)
    return TokenPair(
        access_token=tokens.access_token,
        expires_in=tokens.expires_in,
        refresh_token=tokens.refresh_token,
    )


@router.post("/register", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
@raises(auth_service.register)
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
    await auth_service.register(
        session,
        settings,
        throttle,
        jobs,
        client=client_address(request),
        email=body.email,
        password=body.password,
        full_name=body.full_name,
    )
    return REGISTERED


@router.post("/login", response_model=TokenPair)
@raises(auth_service.login)
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
) -> TokenPair:
    tokens = await auth_service.login(
        session,
        settings,
        throttle,
        client=client_address(request),
        username=form.username,
        password=form.password,
    )
    return token_pair(tokens, response)


@router.post("/refresh", response_model=TokenPair)
@raises(auth_service.refresh)
async def refresh(
    body: RefreshIn, response: Response, session: SessionDep, settings: SettingsDep
) -> TokenPair:
    return token_pair(await auth_service.refresh(session, settings, body.refresh_token), response)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshIn, session: SessionDep) -> None:
    """End the login the refresh token belongs to: its refresh and access tokens stop
    working at once."""
    await auth_service.logout(session, body.refresh_token)


@router.post("/request-verify", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
@raises(auth_service.request_link)
async def request_verify(
    body: EmailIn,
    request: Request,
    settings: SettingsDep,
    throttle: ThrottleDep,
    jobs: JobsDep,
) -> Accepted:
    await auth_service.request_link(
        settings,
        throttle,
        jobs,
        client=client_address(request),
        email=body.email,
        purpose=TokenPurpose.VERIFY_EMAIL,
    )
    return VERIFY_REQUESTED


@router.post("/verify", status_code=status.HTTP_204_NO_CONTENT)
@raises(auth_service.verify)
async def verify(body: TokenIn, session: SessionDep) -> None:
    await auth_service.verify(session, body.token)


@router.post("/request-reset", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
@raises(auth_service.request_link)
async def request_reset(
    body: EmailIn,
    request: Request,
    settings: SettingsDep,
    throttle: ThrottleDep,
    jobs: JobsDep,
) -> Accepted:
    await auth_service.request_link(
        settings,
        throttle,
        jobs,
        client=client_address(request),
        email=body.email,
        purpose=TokenPurpose.RESET_PASSWORD,
    )
    return RESET_REQUESTED


@router.post("/reset", status_code=status.HTTP_204_NO_CONTENT)
@raises(auth_service.reset)
async def reset(body: ResetIn, session: SessionDep, jobs: JobsDep) -> None:
    await auth_service.reset(session, jobs, token=body.token, new_password=body.new_password)


@router.post("/change-password", response_model=TokenPair)
@raises(auth_service.change_password)
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
    tokens = await auth_service.change_password(
        session,
        settings,
        throttle,
        jobs,
        user,
        current_password=body.current_password,
        new_password=body.new_password,
    )
    return token_pair(tokens, response)
