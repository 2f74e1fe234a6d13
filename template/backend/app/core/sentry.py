"""Error reports to Sentry, when SENTRY_DSN is set; imported only then.

The SDK's integrations for what the app runs turn on by themselves (FastAPI, SQLAlchemy,
Redis, RQ, logging: an ERROR log line becomes an event, the lines before it breadcrumbs).
Each event gets the request id as a tag, so that it leads to the request's log lines and
trace. Nothing a client sent that may be a secret leaves: no body, no cookie, no query
string, no authorization or API key header.
"""

from __future__ import annotations

from typing import Any, cast

import sentry_sdk
import structlog
from sentry_sdk.types import Breadcrumb, BreadcrumbHint, Event, Hint

from app.core.config import Settings
from app.core.request_context import current_request_id

# Headers that carry credentials or a client's address, dropped from every event whatever
# the SDK keeps.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "cf-connecting-ip",
        "fly-client-ip",
        "forwarded",
        "true-client-ip",
        "x-forwarded-for",
        "x-real-ip",
    }
)


def _scrubbed(event: Event, _hint: Hint) -> Event:
    scrub(cast(dict[str, Any], event))
    return event


def scrub(event: dict[str, Any]) -> None:
    """Tag the event with its request's id; drop what may be a client's secret."""
    request_id = current_request_id() or structlog.contextvars.get_contextvars().get("request_id")
    if request_id:
        event.setdefault("tags", {})["request_id"] = request_id
    request = event.get("request")
    if isinstance(request, dict):
        for part in ("data", "cookies", "query_string"):
            request.pop(part, None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {
                name: value for name, value in headers.items() if name.lower() not in SECRET_HEADERS
            }
        url = request.get("url")
        if isinstance(url, str):
            request["url"] = url.split("?", 1)[0]


def _breadcrumb(crumb: Breadcrumb, _hint: BreadcrumbHint) -> Breadcrumb | None:
    # Redis commands name their keys, and rate limits key by address.
    return None if crumb.get("category") == "redis" else crumb


def start_sentry(settings: Settings) -> None:
    sentry_sdk.init(
        dsn=settings.SENTRY_DSN,
        environment=settings.ENVIRONMENT.value,
        # No user's address, cookie or header the SDK would otherwise judge harmless.
        send_default_pii=False,
        max_request_body_size="never",
        # A frame's local variables hold the request as the app saw it: its headers and
        # query string included. The traceback's lines are enough.
        include_local_variables=False,
        # Traces are OpenTelemetry's (app/core/tracing.py); Sentry gets errors.
        traces_sample_rate=None,
        before_send=_scrubbed,
        before_breadcrumb=_breadcrumb,
    )
