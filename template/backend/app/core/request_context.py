"""Where the current request comes from, for the records that name it (the audit log).

`RequestOrigin` middleware sets it for each HTTP request, once ClientAddressMiddleware
has decided the client's address (app/core/proxy.py); outside a request (a job, the CLI)
there is none.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

# What of the User-Agent header is kept: enough to tell clients apart.
USER_AGENT_MAX_LENGTH = 256


@dataclass(frozen=True)
class Origin:
    client_address: str | None
    user_agent: str | None


_origin: ContextVar[Origin | None] = ContextVar("request_origin", default=None)


def current_origin() -> Origin | None:
    """The origin of the request being served, or None outside one."""
    return _origin.get()


def _user_agent(headers: list[tuple[bytes, bytes]]) -> str | None:
    values = [value for name, value in headers if name == b"user-agent"]
    if not values:
        return None
    # Header values are bytes: UTF-8 as browsers send it, or else Latin-1, which maps
    # every byte to a character, so nothing fails.
    try:
        text = values[0].decode("utf-8")
    except UnicodeDecodeError:
        text = values[0].decode("latin-1")
    printable = "".join(ch for ch in text if ch.isprintable())
    return printable[:USER_AGENT_MAX_LENGTH] or None


class RequestOrigin:
    """Records each request's client address and user agent for the code it runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        token = _origin.set(Origin(client[0] if client else None, _user_agent(scope["headers"])))
        try:
            await self.app(scope, receive, send)
        finally:
            _origin.reset(token)
