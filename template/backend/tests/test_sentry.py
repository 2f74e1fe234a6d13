"""Error reports: with SENTRY_DSN set, a 500 reaches a Sentry endpoint on loopback with the
request id as a tag and nothing secret the client sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from app.core.config import Settings
from tests.servers import http_receiver, run_script

# The app, a route that fails, and one request to it that carries a secret in every place
# a client can put one.
SCRIPT = """
import asyncio

import httpx
import sentry_sdk

from app.core.config import get_settings
from app.main import create_app

app = create_app(get_settings())


@app.post("/demo/crash")
async def crash() -> None:
    raise RuntimeError("crashed on purpose")


async def main() -> None:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.post(
                "/demo/crash?token=QUERY-SECRET",
                json={"password": "BODY-SECRET"},
                headers={
                    "Authorization": "Bearer HEADER-SECRET",
                    "Cookie": "session=COOKIE-SECRET",
                    "X-API-Key": "KEY-SECRET",
                    "X-Request-ID": "sentry-request-1",
                },
            )
            assert response.status_code == 500, response.text
    assert sentry_sdk.flush(timeout=10) is not False


asyncio.run(main())
"""
SECRETS = ("QUERY-SECRET", "BODY-SECRET", "HEADER-SECRET", "COOKIE-SECRET", "KEY-SECRET")


@pytest.fixture
def sentry() -> Iterator[tuple[str, list[bytes]]]:
    """A Sentry endpoint on loopback: the DSN to give the app, and the envelopes it got."""
    envelopes: list[bytes] = []

    def take(_path: str, body: bytes) -> bytes:
        envelopes.append(body)
        return b""

    with http_receiver(take) as url:
        yield f"{url.replace('http://', 'http://public@')}/1", envelopes


def events(envelopes: list[bytes]) -> list[dict[str, Any]]:
    """The error events in Sentry's envelopes: a header line, then item header and payload."""
    found = []
    for envelope in envelopes:
        lines = envelope.split(b"\n")[1:]
        for header, payload in zip(lines[::2], lines[1::2], strict=False):
            if json.loads(header).get("type") == "event":
                found.append(json.loads(payload))
    return found


def test_an_error_reaches_sentry_with_its_request_id_and_no_secret(
    settings: Settings, sentry: tuple[str, list[bytes]]
) -> None:
    dsn, envelopes = sentry
    run_script(settings, SCRIPT, SENTRY_DSN=dsn)
    [event] = [
        event
        for event in events(envelopes)
        if any(value["type"] == "RuntimeError" for value in event["exception"]["values"])
    ]
    assert event["tags"]["request_id"] == "sentry-request-1"
    request = event["request"]
    assert not {"data", "cookies", "query_string"} & request.keys()
    assert not {"authorization", "cookie", "x-api-key"} & {
        name.lower() for name in request["headers"]
    }
    assert request["url"].endswith("/demo/crash")
    for secret in SECRETS:
        assert not [envelope for envelope in envelopes if secret.encode() in envelope], secret


def test_without_a_dsn_the_sdk_is_not_imported(settings: Settings) -> None:
    script = "import sys, app.main, app.worker.worker\nprint('sentry_sdk' in sys.modules)"
    assert run_script(settings, script).stdout.strip() == "False"
