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
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
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
    status_code = 404


class ServiceUnavailableError(AppError):
    """A service the request cannot do without is down; the request changed nothing (its
    session rolls back as the error passes through it)."""

    status_code = 503
    log_level = logging.ERROR
    retry_after = 30
    public_message = "A service the app needs is unreachable; try again soon."

    def __init__(self, reason: str) -> None:
        headers = {"Retry-After": str(self.retry_after)}
        super().__init__(self.public_message, headers=headers, reason=reason)


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_code(status_code: int) -> str:
    """`404` -> `not_found`: a stable machine-readable code derived from the status."""
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
DATABASE_UNREACHABLE = "The database is unreachable; try again soon."


def database_unreachable(exc: Exception) -> bool:
    """Whether `exc` means the database could not be reached, not that a query was wrong."""
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None)
        return exc.connection_invalidated or (
            isinstance(sqlstate, str) and sqlstate[:2] in UNREACHABLE_SQLSTATE_CLASSES
        )
    # The driver raises these itself while it connects, before SQLAlchemy wraps anything.
    return isinstance(exc, ConnectionError | TimeoutError | socket.gaierror)


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
            422,
            "The request is invalid; see details.",
            code="validation_error",
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
        logger.error("Database unreachable on %s %s: %s", request.method, request.url.path, exc)
        return error_response(503, DATABASE_UNREACHABLE, headers={"Retry-After": "30"})

    for error_class in (DBAPIError, ConnectionError, TimeoutError, socket.gaierror):
        app.add_exception_handler(error_class, database_error)

    @app.exception_handler(Exception)
    async def unhandled_exception(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the log, never to the client.
        logger.exception("Unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "An internal error occurred.", code="internal_error")
