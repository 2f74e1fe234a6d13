"""What the code serving a request knows of it, without being handed the request.

- `RequestContext`, set by the outermost middleware (`RequestTracking`): the request's
  id, its caller once authenticated, its route once matched. The logs name them on
  every line (app/core/logging.py) and jobs carry the id (app/core/queue.py).
- `Origin`, set by `RequestOrigin` once ClientAddressMiddleware has decided the client's
  address (app/core/proxy.py): where the request comes from, for the audit log.

Outside a request (a job, the CLI) there is neither.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is kept when it is this: what proxies and clients generate (UUIDs,
# ULIDs, hex, Fly's and Heroku's ids), nothing that could break a log line or a header.
WELL_FORMED_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", re.ASCII)

access_logger = logging.getLogger("app.access")


@dataclass
class RequestContext:
    request_id: str
    scope: Scope = field(repr=False)
    user_id: str | None = None
    api_key_id: str | None = None

    _route: str | None = field(default=None, repr=False)

    @property
    def route(self) -> str | None:
        """The template of the route that matched, once one has:
        `/api/v1/organizations/{org_id}/files/{file_id}`, whatever the ids were."""
        if self._route is None:
            self._route = route_template(self.scope)
        return self._route


def route_template(scope: Scope) -> str | None:
    """The full template of the scope's matched route. A route knows its template below
    the prefix its router was included with (`/api/v1`); that prefix is the part of the
    path in front of what the route's pattern matches."""
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    pattern = getattr(route, "path_regex", None)
    if not isinstance(template, str) or not isinstance(pattern, re.Pattern):
        return None
    path: str = scope["path"]
    start = 0
    while start != -1:
        if pattern.fullmatch(path[start:]):
            return path[:start] + template
        start = path.find("/", start + 1)
    return template


_request: ContextVar[RequestContext | None] = ContextVar("request_context", default=None)


def current_request() -> RequestContext | None:
    """The request being served, or None outside one."""
    return _request.get()


def current_request_id() -> str | None:
    request = _request.get()
    return request.request_id if request is not None else None


def identify(*, user_id: object = None, api_key_id: object = None) -> None:
    """Name the caller of the current request, for its log lines, once it is known."""
    request = _request.get()
    if request is None:
        return
    if user_id is not None:
        request.user_id = str(user_id)
    if api_key_id is not None:
        request.api_key_id = str(api_key_id)


def incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The client's or proxy's X-Request-ID when there is exactly one and it is well formed."""
    values = [value for name, value in headers if name == b"x-request-id"]
    if len(values) != 1:
        return None
    text = values[0].decode("latin-1")
    return text if WELL_FORMED_REQUEST_ID.fullmatch(text) else None


class RequestObserver(Protocol):
    """What is told of each request as it starts and as it ends (app/core/metrics.py)."""

    def started(self) -> None: ...

    def finished(self, method: str, route: str | None, status: int, seconds: float) -> None: ...


class RequestTracking:
    """Gives each HTTP request an id, returned in its X-Request-ID header, and writes one
    access line when it ends: method, path (never the query string, which may carry a
    token), status, duration and route. The observer hears of the same.

    The outermost layer of the app, so that every answer has the header, a 500 too.
    """

    def __init__(self, app: ASGIApp, observer: RequestObserver | None = None) -> None:
        self.app = app
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope["headers"]) or uuid.uuid4().hex
        header = (b"x-request-id", request_id.encode())
        status = 500
        started = time.perf_counter()
        ended: float | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, ended
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [item for item in message.get("headers", []) if item[0] != header[0]]
                message = {**message, "headers": [*headers, header]}
            await send(message)
            # The time to the answer's last byte, not counting what runs after it (a
            # job run in the API without Redis).
            if message["type"] == "http.response.body" and not message.get("more_body"):
                ended = time.perf_counter()

        request = RequestContext(request_id, scope)
        token = _request.set(request)
        if self.observer is not None:
            self.observer.started()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = (ended or time.perf_counter()) - started
            if self.observer is not None:
                self.observer.finished(scope["method"], request.route, status, seconds)
            if access_logger.isEnabledFor(logging.INFO):
                access_logger.info(
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(seconds * 1000, 2),
                    },
                )
            _request.reset(token)


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
