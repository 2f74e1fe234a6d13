"""HTTP hardening (app/core/http.py, app/core/logging.py): security headers on every
answer, the API's schema and docs off in production, limits on request headers and
bodies, and log lines that a client cannot forge.

What depends on the server is checked against a real uvicorn over a socket, with the
bytes an attacker's script would send: httptools, which uvicorn[standard] runs, sets no
limit on headers, and only a real server sees a chunked body or a lying Content-Length.
"""

from __future__ import annotations

import json
import re
import select
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import Response
from httpx import AsyncClient

from app.core.config import Environment, Settings
from app.core.http import API_CSP, DOCS_CSP, MAX_HEADER_LINE_BYTES
from tests.servers import api_server
from tests.support import PASSWORD, files_path, running_app, token_for

REGISTER = "/api/v1/auth/register"
EXPECTED_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "content-security-policy": API_CSP,
}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def assert_secured(response: httpx.Response) -> None:
    for name, value in EXPECTED_HEADERS.items():
        assert response.headers.get_list(name) == [value], name


def assert_error(response: httpx.Response, status: int, *phrases: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    for phrase in phrases:
        assert phrase in error["message"]


# Security headers


async def test_every_kind_of_answer_carries_the_security_headers(
    app: FastAPI, client: AsyncClient
) -> None:
    async def fail() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/fail", fail)
    answers = [
        await client.get("/health"),
        await client.get("/no-such-page"),
        await client.post(REGISTER, json={"email": "not an email"}),
        await client.get("/api/v1/users/me"),
        await client.get("/fail"),
        await client.get("/openapi.json"),
    ]
    assert [answer.status_code for answer in answers] == [200, 404, 422, 401, 500, 200]
    for answer in answers:
        assert_secured(answer)
        # HSTS outside production would pin http://localhost to https.
        assert "strict-transport-security" not in answer.headers


async def test_production_adds_hsts(settings: Settings) -> None:
    async with running_app(settings, ENVIRONMENT=Environment.PRODUCTION) as (_, client):
        for answer in (await client.get("/health"), await client.get("/no-such-page")):
            assert_secured(answer)
            assert answer.headers["strict-transport-security"] == (
                "max-age=63072000; includeSubDomains"
            )


async def test_headers_a_route_sets_itself_are_kept(app: FastAPI, client: AsyncClient) -> None:
    async def own_policy() -> Response:
        return Response(
            b"x", headers={"Content-Security-Policy": "sandbox", "X-Frame-Options": "SAMEORIGIN"}
        )

    app.add_api_route("/own-policy", own_policy)
    response = await client.get("/own-policy")
    assert response.headers.get_list("content-security-policy") == ["sandbox"]
    assert response.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_the_download_keeps_its_sandboxing_policy(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    ada = await token_for(app, settings, "ada@example.com")
    uploaded = await client.post(
        await files_path(client, ada), headers=ada, files={"file": ("p.png", PNG, "image/png")}
    )
    assert uploaded.status_code == 201, uploaded.text
    download = await client.get(
        f"{await files_path(client, ada)}/{uploaded.json()['id']}/download", headers=ada
    )
    assert download.status_code == 200
    [policy] = download.headers.get_list("content-security-policy")
    assert "sandbox" in policy
    assert download.headers.get_list("x-content-type-options") == ["nosniff"]


def sources(policy: str, directive: str) -> list[str]:
    for part in policy.split(";"):
        name, *values = part.split()
        if name == directive:
            return values
    return []


def allowed(policy: str, directive: str, url: str) -> bool:
    origin = re.match(r"https?://[^/]+", url)
    if origin is None:
        return "'self'" in sources(policy, directive)
    return origin.group() in sources(policy, directive)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_the_docs_pages_may_load_what_they_use(client: AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    [policy] = response.headers.get_list("content-security-policy")
    assert policy == DOCS_CSP
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    page = response.text
    scripts = re.findall(r'<script src="([^"]+)"', page)
    styles = re.findall(r'<link[^>]*rel="stylesheet"[^>]*href="([^"]+)"', page)
    styles += re.findall(r'<link[^>]*href="([^"]+)"[^>]*rel="stylesheet"', page)
    icons = re.findall(r'<link rel="shortcut icon" href="([^"]+)"', page)
    assert scripts
    assert icons
    # Nothing off-site: the pages render on a machine without internet.
    assert not re.search(r"https?:|//", policy)
    for url in [*scripts, *styles, *icons]:
        assert re.match(r"/(?!/)", url), f"{url} is off-site"
    for url in scripts:
        assert allowed(policy, "script-src", url), url
    for url in styles:
        assert allowed(policy, "style-src", url), url
    for url in icons:
        assert allowed(policy, "img-src", url), url
    if re.search(r"<script>", page):
        assert "'unsafe-inline'" in sources(policy, "script-src")
    if "<style>" in page:
        assert "'unsafe-inline'" in sources(policy, "style-src")
    # The schema they read is served under the API's policy.
    assert (await client.get("/openapi.json")).headers["content-security-policy"] == API_CSP


# Docs in production


async def test_production_serves_no_schema_and_no_docs(settings: Settings) -> None:
    async with running_app(settings, ENVIRONMENT=Environment.PRODUCTION) as (_, client):
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            response = await client.get(path)
            assert_error(response, 404)
            assert_secured(response)
        assert (await client.get("/health")).status_code == 200


async def test_docs_enabled_turns_them_on_in_production(settings: Settings) -> None:
    overrides: dict[str, Any] = {"ENVIRONMENT": Environment.PRODUCTION, "DOCS_ENABLED": True}
    async with running_app(settings, **overrides) as (_, client):
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert (await client.get(path)).status_code == 200, path


async def test_docs_enabled_false_turns_them_off_in_development(settings: Settings) -> None:
    overrides: dict[str, Any] = {"ENVIRONMENT": Environment.DEVELOPMENT, "DOCS_ENABLED": False}
    async with running_app(settings, **overrides) as (_, client):
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert (await client.get(path)).status_code == 404, path


# Request bodies, in process


async def test_a_declared_body_over_the_limit_is_refused_unread(client: AsyncClient) -> None:
    oversize = b"[" + b" " * (1024 * 1024) + b"]"
    response = await client.post(
        REGISTER, content=oversize, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "larger than the limit of 1048576 bytes")
    assert response.headers["connection"] == "close"
    assert_secured(response)


async def test_a_body_at_the_limit_is_read(settings: Settings) -> None:
    async with running_app(settings, MAX_REQUEST_BODY_BYTES=64) as (_, client):
        body = b'{"email": "ada@example.com", "password": "x"}'
        at_limit = body + b" " * (64 - len(body))
        assert_error(await client.post(REGISTER, content=at_limit), 422)
        assert_error(await client.post(REGISTER, content=at_limit + b" "), 413, "limit of 64 bytes")


async def test_a_streamed_body_is_cut_off_at_the_limit(client: AsyncClient) -> None:
    chunk = b" " * 65536
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        # No Content-Length: httpx sends it chunked. 64 MiB stand for "never ends".
        nonlocal pulled
        yield b"["
        while pulled < 1024:
            pulled += 1
            yield chunk

    response = await client.post(
        REGISTER, content=endless(), headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "larger than the limit of 1048576 bytes")
    assert_secured(response)
    # Read until the chunk that crossed the limit, and not one more.
    assert pulled == 1024 * 1024 // len(chunk)


async def test_a_form_body_over_the_limit_is_refused(settings: Settings) -> None:
    async with running_app(settings, MAX_REQUEST_BODY_BYTES=1024) as (_, client):
        response = await client.post(
            "/api/v1/auth/login", data={"username": "a" * 2000, "password": PASSWORD}
        )
        assert_error(response, 413, "limit of 1024 bytes")


async def test_uploads_are_left_to_their_own_limit(settings: Settings) -> None:
    async with running_app(settings, MAX_REQUEST_BODY_BYTES=1024) as (app, client):
        ada = await token_for(app, settings, "ada@example.com")
        response = await client.post(
            await files_path(client, ada),
            headers=ada,
            files={"file": ("p.png", PNG, "image/png")},
        )
        assert len(PNG) > 1024
        assert response.status_code == 201, response.text


# Request headers, in process


async def test_a_header_line_over_8_kib_is_refused(client: AsyncClient) -> None:
    name_and_value = MAX_HEADER_LINE_BYTES - len("x-big")
    assert (await client.get("/health", headers={"X-Big": "a" * name_and_value})).status_code == 200
    response = await client.get("/health", headers={"X-Big": "a" * (name_and_value + 1)})
    assert_error(response, 431, f"limit of {MAX_HEADER_LINE_BYTES} bytes")
    assert response.json()["error"]["code"] == "request_header_fields_too_large"
    assert_secured(response)


async def test_headers_over_16_kib_in_total_are_refused(client: AsyncClient) -> None:
    many = {f"X-Part-{number}": "a" * 4000 for number in range(5)}
    response = await client.get("/health", headers=many)
    assert_error(response, 431, "limit of 16384 bytes in total")
    assert response.headers["connection"] == "close"
    few = {f"X-Part-{number}": "a" * 4000 for number in range(3)}
    assert (await client.get("/health", headers=few)).status_code == 200


# Against a real server


@dataclass
class Server:
    url: str
    port: int
    log: Path


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = json.loads(self.body)["error"]
        return error


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    with api_server(settings, log) as url:
        yield Server(url, int(url.rsplit(":", 1)[1]), log)


def read_answer(stream: BinaryIO) -> Answer:
    """One HTTP answer off the connection's stream, leaving any that follows it unread."""
    try:
        status_line = stream.readline()
        assert status_line, "the server closed the connection without an answer"
        headers: dict[str, str] = {}
        while (line := stream.readline()) not in {b"\r\n", b""}:
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.lower()] = value.strip()
        body = stream.read(int(headers.get("content-length", "0")))
    except ConnectionResetError:
        pytest.fail("the server reset the connection instead of answering")
    return Answer(int(status_line.split()[1]), headers, body)


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def request_head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("size", [1024 * 1024, 32 * 1024 * 1024])
def test_a_huge_header_is_refused_by_the_server(server: Server, size: int) -> None:
    with connect(server) as connection:
        head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
        connection.sendall(head)
        answer = read_answer(connection.makefile("rb"))
    assert answer.status == 431
    assert answer.error()["code"] == "request_header_fields_too_large"
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_many_headers_are_refused_by_the_server(server: Server) -> None:
    with connect(server) as connection:
        lines = "".join(f"X-Part-{number}: {'a' * 1000}\r\n" for number in range(100))
        connection.sendall(f"GET /health HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode())
        answer = read_answer(connection.makefile("rb"))
    assert answer.status == 431
    assert "in total" in answer.error()["message"]


def test_an_endless_chunked_body_is_answered_413(server: Server) -> None:
    chunk = b" " * 65536
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    sent = 0
    with connect(server) as connection:
        connection.sendall(
            request_head(REGISTER, "Content-Type: application/json", "Transfer-Encoding: chunked")
        )
        connection.sendall(b"1\r\n[\r\n")
        # A server that read the whole body would never answer; this one must answer
        # long before 64 MiB have gone.
        while sent < 64 * 1024 * 1024:
            readable, _, _ = select.select([connection], [], [], 0)
            if readable:
                break
            try:
                connection.sendall(framed)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        assert sent < 64 * 1024 * 1024, "64 MiB sent and no answer"
        answer = read_answer(connection.makefile("rb"))
    assert answer.status == 413
    assert "larger than the limit of 1048576 bytes" in answer.error()["message"]


def test_a_declared_length_over_the_limit_is_answered_before_the_body(server: Server) -> None:
    with connect(server) as connection:
        # The body is never sent: the answer must not wait for it.
        connection.sendall(
            request_head(REGISTER, "Content-Type: application/json", "Content-Length: 10485760")
        )
        answer = read_answer(connection.makefile("rb"))
    assert answer.status == 413
    assert answer.headers["connection"] == "close"


def test_bytes_past_the_declared_length_are_not_body(server: Server) -> None:
    with connect(server) as connection:
        # The body is the two bytes declared; what follows is the next request.
        connection.sendall(
            request_head(REGISTER, "Content-Type: application/json", "Content-Length: 2")
            + b"{}"
            + b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        stream = connection.makefile("rb")
        first = read_answer(stream)
        second = read_answer(stream)
    assert first.status == 422
    fields = {detail["field"] for detail in first.error()["details"]}
    assert fields == {"body.email", "body.password"}
    assert second.status == 200
