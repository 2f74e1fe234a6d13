"""HTTP hardening: security headers on every response, and limits on what a request may
send before the app spends memory on it.

Both are plain ASGI middleware rather than BaseHTTPMiddleware: they run on every
request, and here that costs a loop over the headers and one wrapped callable, not a
task and a stream per request.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import AppError, error_response

# The JSON API renders nothing and runs nothing, so its pages may load nothing, and no
# site may frame them.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# /docs and /redoc (app/api/docs.py) load everything from the app itself and nothing from
# elsewhere. FastAPI builds them with inline scripts and styles, Swagger UI draws its icons
# as data: images, they call the API, and ReDoc parses the schema in a worker from a blob.
DOCS_CSP = (
    "default-src 'none'; "
    "script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; "
    "connect-src 'self'; "
    "worker-src blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = (
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    # Browsers then refuse to embed responses in other sites' pages (<img>, <script>);
    # a web app's fetch() of the API is a CORS request, which this does not affect.
    ("cross-origin-resource-policy", "same-origin"),
)
# Two years, subdomains included, and no `preload`: joining the browsers' preload list
# is a decision about the whole domain that its owner makes.
HSTS = ("strict-transport-security", "max-age=63072000; includeSubDomains")

# One header line (name and value) may take this much: nginx's default buffer and the
# size most proxies and browsers stay under. A JWT or a session cookie is far smaller.
MAX_HEADER_LINE_BYTES = 8 * 1024
MULTIPART = b"multipart/form-data"


def encoded(headers: Collection[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


class SecurityHeaders:
    """Adds the security headers to every HTTP response, unless the response set a header
    of the same name itself (the file download sends its own, sandboxing CSP)."""

    def __init__(self, app: ASGIApp, *, hsts: bool, docs_paths: Collection[str]) -> None:
        self.app = app
        common = [*SECURITY_HEADERS, HSTS] if hsts else list(SECURITY_HEADERS)
        self.api_headers = encoded([*common, ("content-security-policy", API_CSP)])
        self.docs_headers = encoded([*common, ("content-security-policy", DOCS_CSP)])
        self.docs_paths = frozenset(docs_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Behind a proxy that mounts the app under a prefix, the path still carries it.
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        added = self.docs_headers if path in self.docs_paths else self.api_headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(header for header in added if header[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestTooLargeError(AppError):
    """The request body is larger than MAX_REQUEST_BODY_BYTES (for uploads,
    MAX_UPLOAD_BYTES)."""

    status_code = 413


class HeadersTooLargeError(AppError):
    """The request's headers are larger than MAX_HEADER_BYTES, or one is longer than a
    line may be."""

    status_code = 431


class BodyTooLarge(HTTPException):
    """Raised while the app reads the body, so that it unwinds like any HTTP error and is
    answered by the app's own handler in the one error envelope. `Connection: close`
    makes the server drop the connection instead of reading the rest of the body."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            RequestTooLargeError.status_code,
            too_large_message(limit),
            headers={"Connection": "close"},
        )


def too_large_message(limit: int) -> str:
    return f"The request body is larger than the limit of {limit} bytes."


class RequestLimits:
    """Refuses oversized requests before the app parses them.

    Headers: uvicorn's httptools parser sets no limit, so they are checked here: over
    `max_header_bytes` in total, or one line over MAX_HEADER_LINE_BYTES, is a 431.

    Bodies: a declared Content-Length over `max_body_bytes` is a 413 before any of the
    body is read; otherwise the bytes are counted as the app receives them, which also
    covers chunked bodies with no Content-Length. Multipart bodies are left to the upload
    route, which streams them to storage under its own limit, MAX_UPLOAD_BYTES.
    """

    def __init__(self, app: ASGIApp, *, max_header_bytes: int, max_body_bytes: int) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        total = 0
        content_length = content_type = b""
        for name, value in scope["headers"]:
            size = len(name) + len(value)
            if size > MAX_HEADER_LINE_BYTES:
                await self.refuse_headers(
                    f"A request header is larger than the limit of {MAX_HEADER_LINE_BYTES} bytes.",
                    scope,
                    receive,
                    send,
                )
                return
            total += size
            if name == b"content-length":
                content_length = value
            elif name == b"content-type":
                content_type = value
        if total > self.max_header_bytes:
            await self.refuse_headers(
                f"The request headers are larger than the limit of {self.max_header_bytes} "
                "bytes in total.",
                scope,
                receive,
                send,
            )
            return
        if content_type[: len(MULTIPART)].lower() == MULTIPART:
            await self.app(scope, receive, send)
            return
        # The server has already refused a Content-Length that is not a number; the length
        # check keeps int() off a number too long for it to parse (and surely too large).
        if content_length.isdigit() and (
            len(content_length) > 18 or int(content_length) > self.max_body_bytes
        ):
            response = error_response(
                RequestTooLargeError.status_code,
                too_large_message(self.max_body_bytes),
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return

        limit = self.max_body_bytes
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, receive_within_limit, send)

    async def refuse_headers(
        self, message: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        response = error_response(
            HeadersTooLargeError.status_code, message, headers={"Connection": "close"}
        )
        await response(scope, receive, send)
