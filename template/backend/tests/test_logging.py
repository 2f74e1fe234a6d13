"""Logs: one well-formed line per record, with the request's id, caller and route, in
the API and in the worker's lines for the request's jobs; nothing a client sends can
start a line or a field."""

from __future__ import annotations

import ast
import io
import json
import logging
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI, Response
from httpx import AsyncClient
from pydantic import ValidationError

from app.core.config import LogFormat, Settings
from app.core.logging import formatter
from app.models import User
from tests.servers import api_server, app_server, run_script, run_worker
from tests.support import (
    PASSWORD,
    add_api_key,
    add_user,
    bearer,
    organization_of,
    running_app,
    token_for,
)

GENERATED_ID = re.compile(r"[0-9a-f]{32}")
FIELDS_OF_EVERY_LINE = {"timestamp", "level", "logger", "message"}


class Lines:
    """What the app logged while a test ran, rendered as production renders it."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def of(self, request_id: str) -> list[dict[str, Any]]:
        return [record for record in self.records() if record.get("request_id") == request_id]

    def access(self, request_id: str) -> dict[str, Any]:
        [line] = [record for record in self.of(request_id) if record["logger"] == "app.access"]
        return line


@pytest.fixture
def lines() -> Iterator[Lines]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(json_lines=True))
    # The test's HTTP client logs each request it makes, query string and all.
    handler.addFilter(lambda record: not record.name.startswith(("httpx", "httpcore")))
    root = logging.getLogger()
    root.addHandler(handler)
    app_logger = logging.getLogger("app")
    level = app_logger.level
    app_logger.setLevel(logging.INFO)
    try:
        yield Lines(stream)
    finally:
        root.removeHandler(handler)
        app_logger.setLevel(level)


# Settings


@pytest.mark.parametrize("value", ["verbose", "", "info debug"])
def test_a_bad_log_level_is_refused_with_the_choices(value: str) -> None:
    with pytest.raises(ValidationError, match="use one of DEBUG, INFO, WARNING, ERROR, CRITICAL"):
        Settings(_env_file=None, LOG_LEVEL=value)


def test_the_log_level_is_taken_in_any_case() -> None:
    assert Settings(_env_file=None, LOG_LEVEL=" warning ").LOG_LEVEL == "WARNING"


# Request ids


async def test_each_request_gets_an_id_of_its_own(client: AsyncClient, lines: Lines) -> None:
    first = await client.get("/health")
    second = await client.get("/health")
    ids = [first.headers["X-Request-ID"], second.headers["X-Request-ID"]]
    assert all(GENERATED_ID.fullmatch(request_id) for request_id in ids)
    assert ids[0] != ids[1]
    for request_id in ids:
        assert lines.access(request_id)["path"] == "/health"


@pytest.mark.parametrize(
    "incoming",
    [
        "5b0e8d2c-7f1a-4c3e-9b6d-2a8f0c4e1d7b",
        "5b0e8d2c7f1a4c3e9b6d2a8f0c4e1d7b",
        "01J9ZK3V6Q8H4W2T7N5R1M0XAB",  # a ULID
        "abc",
        "edge-proxy:req.42_7",
        "a" * 128,
    ],
)
async def test_a_well_formed_incoming_id_is_kept(
    client: AsyncClient, lines: Lines, incoming: str
) -> None:
    response = await client.get("/health", headers={"X-Request-ID": incoming})
    assert response.headers["X-Request-ID"] == incoming
    assert lines.access(incoming)["status"] == 200


@pytest.mark.parametrize(
    "incoming",
    [
        b"",
        b" ",
        b"two words",
        b"a" * 129,
        b"-starts-with-a-dash",
        b'"quoted"',
        b'{"request_id":"forged"}',
        b"a/b",
        b"tab\there",
        b"caf\xc3\xa9",  # UTF-8
        b"\xff\xfe",
        b"id%0d%0aX-Forged:1",
    ],
)
async def test_anything_else_is_replaced(
    client: AsyncClient, lines: Lines, incoming: bytes
) -> None:
    response = await client.get("/health", headers=[(b"X-Request-ID", incoming)])
    replaced = response.headers["X-Request-ID"]
    assert GENERATED_ID.fullmatch(replaced)
    assert lines.access(replaced)["status"] == 200
    assert not [record for record in lines.records() if "forged" in json.dumps(record)]


async def test_two_incoming_ids_are_one_too_many(client: AsyncClient) -> None:
    response = await client.get(
        "/health", headers=[(b"X-Request-ID", b"first-id"), (b"X-Request-ID", b"second-id")]
    )
    assert GENERATED_ID.fullmatch(response.headers["X-Request-ID"])
    assert response.headers.get_list("X-Request-ID") == [response.headers["X-Request-ID"]]


async def test_the_answer_has_the_requests_id_whatever_its_route_set(settings: Settings) -> None:
    async with running_app(settings) as (app, client):

        @app.get("/demo/header")
        async def header() -> Response:
            return Response(headers={"X-Request-ID": "set-by-the-route"})

        response = await client.get("/demo/header", headers={"X-Request-ID": "kept-id"})
    assert response.headers.get_list("X-Request-ID") == ["kept-id"]


@pytest.fixture
async def demo_client(settings: Settings) -> AsyncIterator[AsyncClient]:
    async with running_app(settings, MAX_REQUEST_BODY_BYTES=1024) as (app, client):

        @app.get("/demo/crash")
        async def crash() -> None:
            raise RuntimeError("crashed")

        yield client


@pytest.mark.parametrize(
    ("method", "path", "options", "status"),
    [
        ("GET", "/no/such/route", {}, 404),
        ("DELETE", "/health", {}, 405),
        ("GET", "/api/v1/users/me", {}, 401),
        ("POST", "/api/v1/auth/register", {"json": {"email": "x"}}, 422),
        ("POST", "/api/v1/auth/register", {"content": b"x" * 4096}, 413),
        ("GET", "/health", {"headers": {"X-Padding": "x" * 9000}}, 431),
        ("GET", "/demo/crash", {}, 500),
    ],
)
async def test_every_answer_carries_the_id(
    demo_client: AsyncClient,
    lines: Lines,
    method: str,
    path: str,
    options: dict[str, Any],
    status: int,
) -> None:
    headers = {"X-Request-ID": f"answer-{status}", **options.pop("headers", {})}
    response = await demo_client.request(method, path, headers=headers, **options)
    assert response.status_code == status
    assert response.headers["X-Request-ID"] == f"answer-{status}"
    assert lines.access(f"answer-{status}")["status"] == status


# What each line says


async def test_a_callers_lines_name_them_the_route_and_the_answer(
    app: FastAPI, client: AsyncClient, settings: Settings, lines: Lines
) -> None:
    headers = await token_for(app, settings, "ada@example.com")
    me = (await client.get("/api/v1/users/me", headers=headers)).json()
    response = await client.get("/api/v1/users/me?token=in-the-query", headers=headers)
    line = lines.access(response.headers["X-Request-ID"])
    assert line.keys() >= FIELDS_OF_EVERY_LINE
    assert line["level"] == "info"
    assert line["user_id"] == me["id"]
    assert "api_key_id" not in line
    assert line["route"] == "/api/v1/users/me"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/api/v1/users/me", 200)
    assert isinstance(line["duration_ms"], float)
    # The query string is not logged: it may carry a token.
    assert "in-the-query" not in lines.stream.getvalue()


async def test_an_api_keys_lines_name_the_key_and_the_route_its_template(
    app: FastAPI, client: AsyncClient, settings: Settings, lines: Lines
) -> None:
    owner = await add_user(app, "ada@example.com")
    organization = await organization_of(app, owner)
    secret, key_id = await add_api_key(app, settings, organization, owner)
    missing = uuid.uuid4()
    response = await client.get(
        f"/api/v1/organizations/{organization}/files/{missing}", headers=bearer(secret)
    )
    assert response.status_code == 404
    line = lines.access(response.headers["X-Request-ID"])
    assert line["api_key_id"] == str(key_id)
    assert line["route"] == "/api/v1/organizations/{org_id}/files/{file_id}"
    assert line["path"] == f"/api/v1/organizations/{organization}/files/{missing}"
    assert secret not in lines.stream.getvalue()


async def test_a_request_no_route_took_has_no_route(client: AsyncClient, lines: Lines) -> None:
    response = await client.get("/api/v1/nothing/here")
    assert "route" not in lines.access(response.headers["X-Request-ID"])


async def test_a_failed_login_logs_neither_the_name_nor_the_password(
    app: FastAPI, client: AsyncClient, lines: Lines
) -> None:
    user: User = await add_user(app, "ada@example.com")
    attempts = [
        ("ada@example.com", "not the password"),
        # A password typed into the name field.
        ("Tr0ub4dor&3-typed-in-the-wrong-field", PASSWORD),
    ]
    for name, password in attempts:
        response = await client.post(
            "/api/v1/auth/login", data={"username": name, "password": password}
        )
        assert response.status_code == 401
        [failed] = [
            record
            for record in lines.of(response.headers["X-Request-ID"])
            if record["logger"] == "app.auth"
        ]
        assert failed["message"].startswith("Login failed")
        assert failed["route"] == "/api/v1/auth/login"
    logged = lines.stream.getvalue()
    for name, password in attempts:
        assert name not in logged
        assert password not in logged
    assert str(user.id) in logged  # the known account's id stands for its name


async def test_a_job_run_by_the_api_logs_with_its_requests_id(
    client: AsyncClient, lines: Lines
) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": "ada@example.com", "password": PASSWORD},
        headers={"X-Request-ID": "inline-job-1"},
    )
    assert response.status_code == 202
    messages = [record["message"] for record in lines.of("inline-job-1")]
    assert any("Confirm your email address" in message for message in messages), messages


@pytest.mark.redis
async def test_the_workers_lines_for_a_job_carry_its_requests_id(
    settings: Settings, redis_url: str
) -> None:
    overrides = {"REDIS_URL": redis_url, "LOG_FORMAT": LogFormat.JSON}
    async with running_app(settings, **overrides) as (app, client):
        response = await client.post(
            "/api/v1/auth/register",
            json={"email": "ada@example.com", "password": PASSWORD},
            headers={"X-Request-ID": "worker-job-1"},
        )
        assert response.status_code == 202
        worker = run_worker(app.state.settings)
    records = [json.loads(line) for line in worker.stderr.splitlines()]
    assert all(record.keys() >= FIELDS_OF_EVERY_LINE for record in records)
    ours = [record for record in records if record.get("request_id") == "worker-job-1"]
    job_ids = {record["job_id"] for record in ours}
    assert len(job_ids) == 1
    # The job's own line, and RQ's.
    assert any("Confirm your email address" in record["message"] for record in ours), records
    assert any(record["logger"].startswith("rq.") for record in ours), records
    # The worker's own lines, outside a job, carry no request.
    assert any("taking jobs from" in record["message"] for record in records)
    assert not [
        record
        for record in records
        if "taking jobs" in record["message"] and "request_id" in record
    ]


# Nothing a client sends starts a line or a field, in either format


# Each is sent in the path, percent-encoded, and in a login name; the access line writes
# the decoded path.
ATTACKS = {
    "lf": "\n{forged}",
    "cr": "\r{forged}",
    "crlf": "\r\n{forged}",
    "line separator": "\u2028{forged}",
    "next line": "\u0085{forged}",
    "json": '", "level": "critical", "forged": "{forged}',
    "json object": '"}\n{"level": "critical", "message": "{forged}"}',
    "terminal": "\x1b[2K\r{forged}",
    "field": " user_id='{forged}'",
    "logger and field": "' [app.access] user_id='{forged}' path='/",
    "bidirectional": "\u202e{forged}\u202c",
    "zero width": "\u200b{forged}",
}


LITERAL = r"'(?:[^'\\]|\\.)*'" + "|" + r'"(?:[^"\\]|\\.)*"'
# A record in the text format: time, [level], the message as a literal, [logger], fields.
TEXT_LINE = re.compile(rf"\S+ \[\w+\s*\] ({LITERAL})\s+\[([\w.]+)\]\s*(.*)")
TEXT_FIELD = re.compile(r"""(\w+)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+)""")


@dataclass
class Server:
    url: str
    log: Path
    json_lines: bool

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module", params=["json", "text"])
def server(
    request: pytest.FixtureRequest,
    server_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """The JSON format under `python -m app`, the text one under uvicorn's own command."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    configured = server_settings.model_copy(update={"LOG_FORMAT": LogFormat(request.param)})
    run = app_server if request.param == "json" else api_server
    with run(configured, log) as url:
        yield Server(url, log, request.param == "json")


def send_path(server: Server, path: str) -> None:
    """A GET of `path`, sent as it is, with no client to tidy it."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert connection.recv(65536).startswith(b"HTTP/1.1 ")


def wait_for(server: Server, marker: str) -> list[str]:
    """The log's lines, once one names `marker`."""
    deadline = time.monotonic() + 30
    while marker not in server.text():
        assert time.monotonic() < deadline, server.text()[-4000:]
        time.sleep(0.05)
    return server.text().splitlines()


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_path_cannot_forge_a_line_or_a_field(server: Server, attack: str) -> None:
    marker = f"mark{uuid.uuid4().hex[:12]}"
    forged = f"FORGED{marker}"
    payload = marker + ATTACKS[attack].replace("{forged}", forged)
    send_path(server, "/" + quote(payload, safe=""))
    lines = wait_for(server, marker)
    [line] = [line for line in lines if marker in line]
    assert not [
        line
        for line in lines
        if line.lstrip().startswith(("FORGED", "{", '"')) and forged in line and marker not in line
    ]
    if server.json_lines:
        record = json.loads(line)
        assert record.keys() >= FIELDS_OF_EVERY_LINE
        assert "forged" not in record
        assert record["level"] == "info"
        assert record["path"] == "/" + payload
    else:
        assert line.isprintable()
        # The message and each text field are quoted literals: what looks like a field
        # (or a logger's name) inside the path is inside the path.
        parsed = TEXT_LINE.fullmatch(line)
        assert parsed, line
        message, logger, rest = parsed.groups()
        assert (logger, ast.literal_eval(message)) == ("app.access", f"GET /{payload} 404")
        fields = dict(TEXT_FIELD.findall(rest))
        assert set(fields) == {"duration_ms", "method", "path", "request_id", "status"}
        assert ast.literal_eval(fields["path"]) == "/" + payload


def test_a_login_name_reaches_no_log_line(server: Server) -> None:
    marker = f"mark{uuid.uuid4().hex[:12]}"
    name = f"{marker}@example.com\r\n2026-01-01 INFO app.auth: Login succeeded\n{{}}"
    response = httpx.post(
        f"{server.url}/api/v1/auth/login",
        data={"username": name, "password": "x"},
        headers={"X-Request-ID": marker},
    )
    assert response.status_code == 401
    lines = wait_for(server, marker)
    failed = [line for line in lines if marker in line and "Login failed" in line]
    assert len(failed) == 1
    assert f"{marker}@example.com" not in server.text()
    assert not [line for line in lines if line.startswith("2026-01-01")]


def test_every_line_of_the_server_is_one_record(server: Server) -> None:
    marker = f"mark{uuid.uuid4().hex[:12]}"
    httpx.get(f"{server.url}/health", headers={"X-Request-ID": marker})
    lines = wait_for(server, marker)
    if not server.json_lines:
        # The text format starts each record with its time.
        assert all(re.match(r"\d{4}-\d\d-\d\dT", line) for line in lines), lines
        return
    records = [json.loads(line) for line in lines]
    assert all(record.keys() >= FIELDS_OF_EVERY_LINE for record in records)
    loggers = {record["logger"] for record in records}
    # uvicorn's own lines go through the same configuration, and its access log is the app's.
    assert "uvicorn.error" in loggers
    assert "uvicorn.access" not in loggers
    [access] = [record for record in records if record.get("request_id") == marker]
    assert access["logger"] == "app.access"


def test_a_traceback_is_part_of_its_record(settings: Settings) -> None:
    script = (
        "import logging, app.main\n"
        "try:\n"
        "    raise ValueError('broken\\nFORGED line')\n"
        "except ValueError:\n"
        "    logging.getLogger('app.probe').exception('failed for %s', 'eve\\nFORGED')\n"
    )
    for log_format in ("json", "text"):
        lines = run_script(settings, script, LOG_FORMAT=log_format).stderr.splitlines()
        assert not [line for line in lines if line.startswith("FORGED")]
        if log_format == "json":
            [record] = [json.loads(line) for line in lines if "app.probe" in line]
            assert record["message"] == "failed for eve\nFORGED"
            assert record["level"] == "error"
            assert record["exception"].startswith("Traceback (most recent call last):")
            assert record["exception"].endswith("ValueError: broken\nFORGED line")
        else:
            [at] = [number for number, line in enumerate(lines) if "app.probe" in line]
            assert "failed for eve\\nFORGED" in lines[at]
            # The traceback follows the line, indented, the message's newline and all.
            traceback = lines[at + 1 :]
            assert traceback[0] == "    Traceback (most recent call last):"
            assert traceback[-2:] == ["    ValueError: broken", "    FORGED line"]
            assert all(line.startswith("    ") for line in traceback)
