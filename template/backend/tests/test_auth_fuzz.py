"""Property-based tests: random and mutated tokens, random bodies on the auth endpoints.

Whatever arrives, the answer is a 4xx that says what is wrong, never a 500. Hypothesis
drives a synchronous test, so the app runs in a portal thread with its own event loop.
"""

from __future__ import annotations

import base64
import os
import string
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from app.core.config import Settings
from app.main import create_app
from tests.support import PASSWORD, empty_tables

# In CI (CI=true) the examples are the same on every run, so a red build always means a
# change of the code; locally each run explores new ones.
IN_CI = bool(os.environ.get("CI"))
FUZZ = hypothesis_settings(
    max_examples=150,
    deadline=None,
    derandomize=IN_CI,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class Running:
    portal: BlockingPortal
    client: AsyncClient
    access_token: str
    refresh_token: str

    def request(self, method: str, path: str, **kwargs: Any) -> Response:
        response: Response = self.portal.call(lambda: self.client.request(method, path, **kwargs))
        return response


@pytest.fixture
def running(settings: Settings) -> Iterator[Running]:
    app: FastAPI = create_app(settings)
    with ExitStack() as stack:
        portal = stack.enter_context(start_blocking_portal())
        stack.enter_context(portal.wrap_async_context_manager(app.router.lifespan_context(app)))
        client = AsyncClient(
            transport=ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://testserver",
        )
        try:
            running = Running(portal, client, "", "")
            email = "fuzz@example.com"
            registered = running.request(
                "POST", "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
            )
            assert registered.status_code == 202
            tokens = running.request(
                "POST", "/api/v1/auth/login", data={"username": email, "password": PASSWORD}
            ).json()
            running.access_token = tokens["access_token"]
            running.refresh_token = tokens["refresh_token"]
            yield running
        finally:
            portal.call(client.aclose)
            portal.call(empty_tables, app.state.engine)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=200)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "email",
    "password",
    "full_name",
    "refresh_token",
    "token",
    "new_password",
    "current_password",
    "role",
]
# Mostly the fields the endpoints know, with values of any type and size.
bodies = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=12), json_values, max_size=5)
JSON_ENDPOINTS = [
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/request-verify"),
    ("POST", "/api/v1/auth/verify"),
    ("POST", "/api/v1/auth/request-reset"),
    ("POST", "/api/v1/auth/reset"),
    ("POST", "/api/v1/auth/change-password"),
    ("PATCH", "/api/v1/users/me"),
]


def assert_client_error(response: Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]["message"]


def test_random_json_bodies_never_cause_a_server_error(running: Running) -> None:
    @FUZZ
    @given(endpoint=st.sampled_from(JSON_ENDPOINTS), body=bodies | json_values)
    def check(endpoint: tuple[str, str], body: Any) -> None:
        method, path = endpoint
        headers = {"Authorization": f"Bearer {running.access_token}"}
        assert_client_error(running.request(method, path, json=body, headers=headers))

    check()


def test_random_login_forms_and_raw_bodies_never_cause_a_server_error(running: Running) -> None:
    form_fields = st.sampled_from(["username", "password", "grant_type", "scope", "client_id"])

    @FUZZ
    @given(
        form=st.dictionaries(form_fields, st.text(max_size=300), max_size=5),
        raw=st.binary(max_size=300),
        content_type=st.sampled_from(
            ["application/json", "application/x-www-form-urlencoded", "multipart/form-data", ""]
        ),
    )
    def check(form: dict[str, str], raw: bytes, content_type: str) -> None:
        assert_client_error(running.request("POST", "/api/v1/auth/login", data=form))
        for _, path in JSON_ENDPOINTS[:3]:
            response = running.request(
                "POST", path, content=raw, headers={"Content-Type": content_type}
            )
            assert_client_error(response)

    check()


HEADER_SAFE = string.ascii_letters + string.digits + "-_.=+/ "


def segments(token: str) -> list[bytes]:
    return [base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)) for part in token.split(".")]


@st.composite
def mutated_tokens(draw: st.DrawFn, genuine: str) -> str:
    kind = draw(st.sampled_from(["replace", "truncate", "swap", "random", "insert"]))
    if kind == "random":
        return draw(st.text(alphabet=HEADER_SAFE, max_size=600))
    if kind == "truncate":
        return genuine[: draw(st.integers(0, len(genuine) - 1))]
    if kind == "swap":
        parts = genuine.split(".")
        return ".".join(draw(st.permutations(parts)))
    position = draw(st.integers(0, len(genuine) - 1))
    character = draw(st.sampled_from(HEADER_SAFE))
    if kind == "insert":
        return genuine[:position] + character + genuine[position:]
    return genuine[:position] + character + genuine[position + 1 :]


def test_mutated_and_random_tokens_are_refused_without_a_server_error(running: Running) -> None:
    genuine = running.access_token

    @FUZZ
    @given(token=mutated_tokens(genuine))
    def check(token: str) -> None:
        response = running.request(
            "GET", "/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert_client_error(response)
        # A token passes only if it decodes to the genuine one's bytes: a change to the
        # unused low bits of a segment's last base64 character alters nothing.
        if response.status_code == 200:
            assert segments(token.strip()) == segments(genuine)

    check()


def test_mutated_refresh_tokens_are_refused_without_a_server_error(running: Running) -> None:
    genuine = running.refresh_token

    @FUZZ
    @given(token=mutated_tokens(genuine))
    def check(token: str) -> None:
        response = running.request("POST", "/api/v1/auth/refresh", json={"refresh_token": token})
        assert_client_error(response)
        assert response.status_code in {401, 422} or token == genuine

    check()
