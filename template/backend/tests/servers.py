"""Real services for the tests, on loopback: an S3 endpoint (moto's server), an SMTP
server (aiosmtpd), Redis (TEST_REDIS_URL), and the RQ worker as a separate process.

moto and aiosmtpd come with the dev dependencies, so their tests always run. Redis
tests need TEST_REDIS_URL; they skip without it, or fail with REQUIRE_REDIS=1 (as CI
runs them). The Redis database named there is emptied before each such test.
"""

from __future__ import annotations

import asyncio
import email
import gzip
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from filelock import FileLock
from moto.server import ThreadedMotoServer
from pydantic import SecretStr
from redis import Redis

from app.core.config import Settings, SmtpSecurity

BACKEND_DIR = Path(__file__).resolve().parents[1]
S3_KEYS = {"S3_ACCESS_KEY_ID": "testing", "S3_SECRET_ACCESS_KEY": SecretStr("testing")}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_settings(s3_endpoint: str) -> dict[str, Any]:
    """Settings overrides for a fresh, empty bucket on the S3 endpoint."""
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    return {
        "S3_ENDPOINT_URL": s3_endpoint,
        "S3_BUCKET": bucket,
        "S3_REGION": "us-east-1",
        "S3_FORCE_PATH_STYLE": True,
        **S3_KEYS,
    }


class Mailbox:
    """What the SMTP server received. With `refusing` set it answers DATA with 451."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refusing = False
        self.delay = 0.0  # seconds to wait before accepting a message
        self.receiving = threading.Event()  # set when a message's data starts to arrive

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.receiving.set()
        await asyncio.sleep(self.delay)
        if self.refusing:
            return "451 Requested action aborted: try again later"
        content = envelope.content
        raw = content if isinstance(content, bytes) else (content or "").encode()
        message = email.message_from_bytes(raw, policy=default_policy)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.messages if message["To"] == address]


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[Controller, Mailbox]]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, mailbox
    controller.stop()


@pytest.fixture
def mailbox(smtp_server: tuple[Controller, Mailbox]) -> Mailbox:
    _, box = smtp_server
    box.messages.clear()
    box.refusing = False
    box.delay = 0.0
    box.receiving.clear()
    return box


@pytest.fixture
def smtp_settings(smtp_server: tuple[Controller, Mailbox], mailbox: Mailbox) -> dict[str, Any]:
    controller, _ = smtp_server
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": controller.port,
        "SMTP_SECURITY": SmtpSecurity.NONE,
        "SMTP_TIMEOUT_SECONDS": 5.0,
    }


@pytest.fixture
def redis_url() -> Iterator[str]:
    """TEST_REDIS_URL, emptied, and this test's alone: the tests that use it take turns,
    across the workers of pytest-xdist and any other run on this machine."""
    url = os.environ.get("TEST_REDIS_URL")
    if url is None:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail("REQUIRE_REDIS=1 but TEST_REDIS_URL is not set")
        pytest.skip("set TEST_REDIS_URL (for example redis://127.0.0.1:6379/15) to run")
    name = hashlib.sha256(url.encode()).hexdigest()[:16]
    with FileLock(Path(tempfile.gettempdir()) / f"test-redis-{name}.lock"):
        Redis.from_url(url).flushdb()
        yield url


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce `settings` in another process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, list):
            value = ",".join(str(item) for item in value)
        if isinstance(value, bool):
            value = "true" if value else "false"
        env[name] = str(value)
    return env


def start_worker(settings: Settings) -> subprocess.Popen[str]:
    """`python -m app.worker`, running until it is stopped."""
    return subprocess.Popen(
        [sys.executable, "-m", "app.worker"],
        cwd=BACKEND_DIR,
        env={**os.environ, **settings_env(settings)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_worker(settings: Settings) -> subprocess.CompletedProcess[str]:
    """`python -m app.worker --burst` in its own process: it runs what is queued, then exits."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "app.worker", "--burst"],
        cwd=BACKEND_DIR,
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 120
    return result


@contextmanager
def api_server(settings: Settings, log: Path) -> Iterator[str]:
    """The API on `settings` in a process of its own, on a free port, under uvicorn's own
    command; yields its base URL. Its output goes to `log`."""
    port = free_port()
    command = ["-m", "uvicorn", "app.main:app", "--no-proxy-headers"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with serving(command, settings_env(settings), log, port) as url:
        yield url


@contextmanager
def app_server(settings: Settings, log: Path, **env: str) -> Iterator[str]:
    """`python -m app`, as the README runs it, on `settings` and `env`, on a free port;
    yields its base URL. Its output goes to `log`."""
    port = free_port()
    env = {**settings_env(settings), "HOST": "127.0.0.1", "PORT": str(port), **env}
    with serving(["-m", "app"], env, log, port) as url:
        yield url


@contextmanager
def serving(arguments: list[str], env: dict[str, str], log: Path, port: int) -> Iterator[str]:
    with log.open("w") as output:
        process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, *arguments],
            cwd=BACKEND_DIR,
            env={**os.environ, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def run_script(settings: Settings, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -c script` in the backend, on `settings` and `env`; it must succeed."""
    result = subprocess.run(  # noqa: S603 - this interpreter, a script of the tests
        [sys.executable, "-c", script],
        cwd=BACKEND_DIR,
        env={**os.environ, **settings_env(settings), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


@contextmanager
def http_receiver(take: Callable[[str, bytes], bytes]) -> Iterator[str]:
    """An HTTP server on loopback that hands each POST's path and body (gzip undone) to
    `take` and answers 200 with what `take` returns; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            answer = take(self.path, body)
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
