"""The app's errors, and one JSON shape for every error response.

    {"error": {"code": "not_found", "message": "User not found", "details": null}}

Clients branch on `code`, show `message`, and for validation errors read `details`,
a list of {"field": "body.email", "message": "...", "type": "..."}.

Services raise an `AppError` subclass, which says its status, its message and any
headers; one handler turns each into the answer, so routes never translate errors.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any, ClassVar, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class AppError(Exception):
    """A request the app refuses or cannot serve, with the answer it gets.

    Subclasses set `status_code` (and `code`, when the one derived from the status is
    not precise enough). `message` is shown to the client and `headers` go on the
    answer; `reason`, when given, is what the log says instead of the message.
    """

    status_code = 400
    code: str | None = None
    # Refusals are part of normal traffic; subclasses an operator must see log higher.
    log_level = logging.INFO
    # The headers the answer carries, for the API document.
    header_names: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(reason or message)
        self.message = message
        self.headers = dict(headers or {})


class NotFoundError(AppError):
    """The thing named in the path does not exist, or is not one the caller may see."""

    status_code = 404


class ServiceUnavailableError(AppError):
    """A service the request cannot do without is down; the request changed nothing (its
    session rolls back as the error passes through it)."""

    status_code = 503
    log_level = logging.ERROR
    header_names = ("Retry-After",)
    retry_after = 30
    public_message = "A service the app needs is unreachable; try again soon."

    def __init__(self, reason: str) -> None:
        headers = {"Retry-After": str(self.retry_after)}
        super().__init__(self.public_message, headers=headers, reason=reason)


Declared = TypeVar("Declared", bound=Callable[..., Any])


def raises(*sources: type[AppError] | Callable[..., Any]) -> Callable[[Declared], Declared]:
    """Declare the AppErrors a function may raise: error classes, or functions declared
    so themselves (a route names the service functions it calls).

    The API document lists, for each operation, the errors its route and every
    dependency it uses declare (app/api/openapi.py), so they are written down once, next
    to the code that raises them.
    """

    def declare(function: Declared) -> Declared:
        errors = list(declared_errors(function))
        for source in sources:
            if isinstance(source, type) and issubclass(source, AppError):
                errors.append(source)
            else:
                errors.extend(declared_errors(source))
        vars(function)["raises"] = tuple(dict.fromkeys(errors))
        return function

    return declare


def declared_errors(function: object) -> Iterable[type[AppError]]:
    errors: tuple[type[AppError], ...] = getattr(function, "raises", ())
    return errors


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


# RFC 9110's names for the statuses it renamed, which Python adopted only in 3.13: a code
# must not change with the interpreter a project runs on.
RFC_9110_PHRASES = {
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}


def error_code(status_code: int) -> str:
    """`404` -> `not_found`: a stable machine-readable code derived from the status."""
    phrase = RFC_9110_PHRASES.get(status_code)
    if phrase is None:
        try:
            phrase = HTTPStatus(status_code).phrase
        except ValueError:
            return "error"
    return re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")


def error_response(
    status_code: int,
    message: str,
    *,
    code: str | None = None,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(
        error=ErrorDetail(code=code or error_code(status_code), message=message, details=details)
    )
    return JSONResponse(body.model_dump(), status_code=status_code, headers=headers)


def validation_details(exc: RequestValidationError) -> list[dict[str, str]]:
    return [
        {
            "field": ".".join(str(part) for part in error["loc"]),
            "message": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors()
    ]


# SQLSTATE classes of a database that cannot serve now rather than of a query it refused:
# connection exceptions (08), insufficient resources such as too many connections (53),
# operator intervention such as a shutdown or restart in progress (57).
UNREACHABLE_SQLSTATE_CLASSES = ("08", "53", "57")


class InvalidRequestError(AppError):
    """The request's parameters or body do not match the operation; `details` lists each
    field and what is wrong with it."""

    status_code = 422
    code = "validation_error"
    public_message = "The request is invalid; see details."


class MalformedBodyError(AppError):
    """The body cannot be read as the type it declares: not UTF-8, not JSON, not the form
    it names. FastAPI answers it before the request reaches the route."""

    status_code = 400


class DatabaseUnavailableError(ServiceUnavailableError):
    """The database cannot be reached; the request changed nothing."""

    public_message = "The database is unreachable; try again soon."


def database_unreachable(exc: Exception) -> bool:
    """Whether `exc` means the database could not be reached, not that a query was wrong."""
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None)
        return exc.connection_invalidated or (
            isinstance(sqlstate, str) and sqlstate[:2] in UNREACHABLE_SQLSTATE_CLASSES
        )
    # The driver raises these itself while it connects, before SQLAlchemy wraps anything;
    # the pool raises its TimeoutError when every connection stayed busy too long.
    return isinstance(exc, ConnectionError | TimeoutError | socket.gaierror | PoolTimeoutError)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.detail, str):
            return error_response(exc.status_code, exc.detail, headers=exc.headers)
        return error_response(
            exc.status_code, error_code(exc.status_code), details=exc.detail, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_exception(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(
            InvalidRequestError.status_code,
            InvalidRequestError.public_message,
            code=InvalidRequestError.code,
            details=validation_details(exc),
        )

    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> JSONResponse:
        logger.log(
            exc.log_level,
            "%s on %s %s: %s",
            type(exc).__name__,
            request.method,
            request.url.path,
            exc,
        )
        return error_response(exc.status_code, exc.message, code=exc.code, headers=exc.headers)

    # A database outage is answered like any other dependency's: 503 with Retry-After.
    # The pool replaces dropped connections by itself once the database is back.
    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        if not database_unreachable(exc):
            return await unhandled_exception(request, exc)
        return await app_error(request, DatabaseUnavailableError(str(exc)))

    for error_class in (
        DBAPIError,
        ConnectionError,
        TimeoutError,
        socket.gaierror,
        PoolTimeoutError,
    ):
        app.add_exception_handler(error_class, database_error)

    @app.exception_handler(Exception)
    async def unhandled_exception(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the log, never to the client.
        logger.exception("Unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "An internal error occurred.", code="internal_error")
