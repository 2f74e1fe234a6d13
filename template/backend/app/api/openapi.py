"""The API document: stable operation ids, and every error each operation can answer.

An operation's errors are not written on its route: they are the AppErrors that the route
and every dependency it uses declare with `raises` (app/core/errors.py), next to the code
that raises them, plus the request limits and validation that apply to every request.
Each is documented with the one error envelope, its `code` values and its headers.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from app.core.errors import (
    AppError,
    ErrorResponse,
    InvalidRequestError,
    MalformedBodyError,
    declared_errors,
    error_code,
)
from app.core.http import HeadersTooLargeError, RequestTooLargeError

ENVELOPE = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
HEADERS = {
    "Retry-After": "Seconds to wait before trying again",
    "WWW-Authenticate": "How to authenticate: Bearer",
}


def operation_id(route: APIRoute | RouteContext) -> str:
    """`auth-login`, `users-read-me`, `files-upload`: the route's tag, then its function's
    name without the tag's noun, as generated clients name their functions."""
    tag = re.sub(r"[ -]", "_", str(route.tags[0])) if route.tags else "api"
    noun = tag.removesuffix("s")
    name = re.sub(rf"_({tag}|{noun})$", "", str(route.name))
    return f"{tag}-{name}".replace("_", "-")


def callables(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    if dependant.call is not None:
        yield dependant.call
    for dependency in dependant.dependencies:
        yield from callables(dependency)


def api_routes(app: FastAPI) -> Iterator[RouteContext]:
    """Each API route as the document shows it: with its full path and every dependency
    (FastAPI includes routers lazily, so `app.routes` holds the routers, not the routes)."""
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute) and context.include_in_schema:
            yield context


def route_errors(route: RouteContext) -> list[type[AppError]]:
    """What the route and its dependencies declare they raise, each error once."""
    errors = [error for call in callables(route.dependant) for error in declared_errors(call)]
    return list(dict.fromkeys(errors))


def summary(error: type[AppError]) -> str:
    text = getattr(error, "public_message", None) or inspect.getdoc(error) or error.__name__
    return " ".join(text.split("\n\n")[0].split())


def error_responses(errors: list[type[AppError]]) -> dict[str, dict[str, Any]]:
    by_status: dict[int, list[type[AppError]]] = {}
    for error in errors:
        by_status.setdefault(error.status_code, []).append(error)
    responses = {}
    for status, group in sorted(by_status.items()):
        lines = [f"- `{error.code or error_code(status)}`: {summary(error)}" for error in group]
        response: dict[str, Any] = {"description": "\n".join(lines), "content": ENVELOPE}
        headers = sorted({name for error in group for name in error.header_names})
        if headers:
            response["headers"] = {
                name: {"description": HEADERS[name], "schema": {"type": "string"}}
                for name in headers
            }
        responses[str(status)] = response
    return responses


def add_errors(document: dict[str, Any], app: FastAPI) -> None:
    """Document every operation's errors in `document`, FastAPI's own for `app`."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    envelope = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(envelope.pop("$defs", {}))
    schemas["ErrorResponse"] = envelope
    for route in api_routes(app):
        for method in sorted(route.methods or ()):
            operation = document["paths"][route.path_format][method.lower()]
            responses = operation["responses"]
            # Any request may be refused for its headers; one with a body for its size.
            errors: list[type[AppError]] = [HeadersTooLargeError, *route_errors(route)]
            if "requestBody" in operation:
                errors.append(RequestTooLargeError)
            # A body FastAPI reads for the route (uploads the route reads itself).
            if getattr(route, "body_field", None) is not None:
                errors.append(MalformedBodyError)
            # FastAPI documents 422 for every operation that takes parameters or a body,
            # with a shape of its own: the app answers those in the envelope.
            if responses.pop("422", None) is not None:
                errors.append(InvalidRequestError)
            for status, response in error_responses(errors).items():
                # A route's own answer for a status (readiness's 503 body) stays.
                responses.setdefault(status, response)
            operation["responses"] = dict(sorted(responses.items()))
    # FastAPI's validation error shapes, once nothing refers to them (in this order: the
    # first refers to the second).
    for name in ("HTTPValidationError", "ValidationError"):
        if f'"#/components/schemas/{name}"' not in json.dumps(document):
            schemas.pop(name, None)


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (and /openapi.json) the document with every error added."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            add_errors(document, app)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
