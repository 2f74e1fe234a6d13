"""A generated project running for real, for the end-to-end, fault and fuzzing tests.

`launch()` renders nothing itself: it takes a rendered project and the shared venv, gives
the project a fresh PostgreSQL database, starts moto's S3 server and an SMTP server on
loopback, migrates, creates the owner, and starts the API (`python -m app`) and the RQ
worker (`python -m app.worker`) as subprocesses, each with the project's own command.
Everything it started is stopped when the `with` block ends, however it ends.

The app reaches S3 and PostgreSQL through `Gate`s, TCP relays the tests can close and
open again: the service vanishes for the app (connections refused, open ones cut) while
moto keeps its buckets and the machine's PostgreSQL serves everyone else, as an outage
of the network path would.
"""

from __future__ import annotations

import email
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from aiosmtpd.controller import Controller
from net import free_port, wait_until
from template_tools import ProjectEnv

POSTGRES_SERVER = os.environ.get(
    "TEMPLATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# Database 11 of the machine's Redis belongs to these tests (10, 9, ... to the second and
# further pytest-xdist workers, so that one worker's FLUSHDB never hits another's stack);
# 12 to 15 to other runs.
_XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
SHARED_REDIS = os.environ.get(
    "TEMPLATE_TEST_E2E_REDIS", f"redis://127.0.0.1:6379/{11 - _XDIST_WORKER}"
)
PYTHON_VERSION = "3.11"
OWNER_EMAIL = "owner@example.com"
OWNER_PASSWORD = "the owner's end-to-end passphrase"
FRONTEND_URL = "https://app.example.test"
BUCKET = "e2e-uploads"


def psql(sql: str) -> str:
    """Run `sql` on the PostgreSQL server as its administrator; the output, unadorned."""
    if shutil.which("psql") is None:
        pytest.fail("psql is not installed; these tests need PostgreSQL's client")
    result = subprocess.run(
        ["psql", POSTGRES_SERVER, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        pytest.fail(f"psql failed on {sql!r}: {result.stderr.strip()}")
    return result.stdout.strip()


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """The name of a new, empty PostgreSQL database, dropped at the end."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    psql(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_cli(url: str, *command: str) -> str:
    if shutil.which("redis-cli") is None:
        pytest.fail("redis-cli is not installed; these tests need Redis")
    result = subprocess.run(
        ["redis-cli", "-u", url, *command], capture_output=True, text=True, check=False
    )
    if result.returncode != 0 or result.stdout.startswith(("ERR", "Could not connect")):
        pytest.fail(f"redis-cli {' '.join(command)} on {url}: {result.stdout}{result.stderr}")
    return result.stdout.strip()


class PrivateRedis:
    """A redis-server of the test's own, on a free loopback port, that may be killed."""

    def __init__(self, workdir: Path) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is not installed; the fault tests start their own")
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: redis_ping(self.port), "the private redis-server to answer")
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


def redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
        connection.sendall(b"PING\r\n")
        return connection.recv(16).startswith(b"+PONG")


class Gate:
    """A TCP relay to `host`:`port`. `close()` refuses new connections and cuts the open
    ones, as if the service had gone; `open()` lets traffic through again. `freeze()`
    keeps connections open but passes nothing until `thaw()`: a service that hangs."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        # accept() wakes up now and then to notice that the gate was closed.
        listener.settimeout(0.2)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._connections |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class Mailbox:
    """The SMTP server's handler: keeps what it accepted; with `refusing` set it answers
    every message with 451, a temporary failure, and counts the refusal."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refused = 0
        self.refusing = False
        self._changed = threading.Condition()

    # aiosmtpd calls the handler's hook by this name.
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._changed:
            if self.refusing:
                self.refused += 1
                self._changed.notify_all()
                return "451 Requested action aborted: try again later"
            message = email.message_from_bytes(envelope.content, policy=default_policy)
            assert isinstance(message, EmailMessage)
            self.messages.append(message)
            self._changed.notify_all()
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        with self._changed:
            return [message for message in self.messages if message["To"] == address]

    def wait_for(self, address: str, count: int = 1, timeout: float = 30) -> list[EmailMessage]:
        """The messages to `address` once there are `count` of them."""
        with self._changed:
            arrived = self._changed.wait_for(
                lambda: len([m for m in self.messages if m["To"] == address]) >= count, timeout
            )
        if not arrived:
            pytest.fail(f"{count} message(s) to {address} did not arrive within {timeout:g} s")
        return self.to(address)

    def wait_for_refusals(self, count: int, timeout: float = 30) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self.refused >= count, timeout):
                pytest.fail(f"the SMTP server refused {self.refused} of {count} messages")


class SmtpServer:
    """aiosmtpd on a loopback port that stays the same when it is stopped and started."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.port = free_port()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def link_token(message: EmailMessage, page: str) -> str:
    """The one-time token of the link to FRONTEND_URL/`page` in the message's text part."""
    body = message.get_body(("plain",))
    assert body is not None, "the message has no text part"
    text = body.get_content()
    prefix = f"{FRONTEND_URL}/{page}#token="
    lines = [line.strip() for line in text.splitlines() if prefix in line]
    assert lines, f"no link to {prefix}... in:\n{text}"
    return lines[0][lines[0].index(prefix) + len(prefix) :].split()[0]


# Fields of request and answer bodies whose values are credentials.
CREDENTIAL_FIELDS = re.compile(r"password|^(access_|refresh_)?token$|secret")


def credentials_in(value: object) -> set[str]:
    """The credential values found in a JSON or form body, at any depth."""
    found: set[str] = set()
    if isinstance(value, dict):
        for name, item in value.items():
            if isinstance(item, str) and CREDENTIAL_FIELDS.search(name) and item:
                found.add(item)
            else:
                found |= credentials_in(item)
    elif isinstance(value, list):
        for item in value:
            found |= credentials_in(item)
    return found


class Api:
    """requests against the running API, each call checked for its status. Every
    credential a call sends or receives is kept in `credentials`, for the log checks."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.credentials: set[str] = set()

    def call(
        self,
        method: str,
        path: str,
        expect: int,
        token: str | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
            self.credentials.add(token)
        self.credentials |= credentials_in(kwargs.get("json")) | credentials_in(kwargs.get("data"))
        response = self.session.request(
            method,
            f"{self.base_url}{path}",
            headers=headers,
            timeout=60,
            allow_redirects=False,
            **kwargs,
        )
        assert response.status_code == expect, (
            f"{method} {path}: expected {expect}, got {response.status_code}: {response.text}"
        )
        if response.content and response.headers.get("Content-Type") == "application/json":
            self.credentials |= credentials_in(response.json())
        return response

    def files_path(self, token: str) -> str:
        """The path of the files of the caller's first organization (a new account's own)."""
        organizations = self.call("GET", "/api/v1/organizations", 200, token=token).json()
        return f"/api/v1/organizations/{organizations['items'][0]['id']}/files"

    def login(self, email: str, password: str) -> dict[str, Any]:
        response = self.call(
            "POST", "/api/v1/auth/login", 200, data={"username": email, "password": password}
        )
        pair: dict[str, Any] = response.json()
        assert set(pair) == {"access_token", "token_type", "expires_in", "refresh_token"}
        assert pair["token_type"] == "bearer"
        assert response.headers["Cache-Control"] == "no-store"
        return pair


def error_of(response: requests.Response) -> dict[str, Any]:
    """The app's one error shape: {"error": {"code", "message", "details"}}."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    error: dict[str, Any] = body["error"]
    return error


class Stack:
    """The generated project's processes and the services they are pointed at."""

    def __init__(
        self,
        backend: Path,
        base_env: dict[str, str],
        logs: Path,
        *,
        database: str,
        redis_url: str,
        s3: Gate,
        postgres: Gate,
        smtp: SmtpServer,
        **settings: str,
    ) -> None:
        self.backend = backend
        self.python = str(Path(base_env["UV_PROJECT_ENVIRONMENT"]) / "bin" / "python")
        self.logs = logs
        self.database = database
        self.s3 = s3
        self.postgres = postgres
        self.smtp = smtp
        self.mailbox = smtp.mailbox
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **base_env,
            "ENVIRONMENT": "production",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "DATABASE_URL": through(postgres, database),
            "REDIS_URL": redis_url,
            "S3_BUCKET": BUCKET,
            "S3_ENDPOINT_URL": s3.url,
            "S3_ACCESS_KEY_ID": "testing",
            "S3_SECRET_ACCESS_KEY": "testing",
            "S3_REGION": "us-east-1",
            "S3_FORCE_PATH_STYLE": "true",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp.port),
            "SMTP_SECURITY": "none",
            "SMTP_TIMEOUT_SECONDS": "5",
            "FRONTEND_URL": FRONTEND_URL,
            "OWNER_EMAIL": OWNER_EMAIL,
            "OWNER_PASSWORD": OWNER_PASSWORD,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "LOG_LEVEL": "INFO",
            "HEALTH_CHECK_TIMEOUT_SECONDS": "2",
            # Retries a second apart, so that a failed job's next attempt comes within
            # a test's patience; the number of retries stays the project's default.
            "JOB_RETRY_INTERVALS": "1",
            "PYTHONUNBUFFERED": "1",
            **settings,
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.api = Api(self.url)

    def run(self, *args: str) -> str:
        result = subprocess.run(
            [self.python, *args],
            cwd=self.backend,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"`python {' '.join(args)}` failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout + result.stderr

    def start(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [self.python, *args],
            cwd=self.backend,
            env={**self.env, **env},
            stdout=log,
            stderr=log,
        )
        log.close()
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_api(self) -> None:
        api = self.start("api", "-m", "app")

        def healthy() -> bool:
            if api.poll() is not None:
                pytest.fail(f"the API exited with {api.returncode}:\n{self.log('api')[-4000:]}")
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200

        wait_until(healthy, "the API to answer /health", timeout=60)

    def start_worker(self, name: str = "worker", **env: str) -> str:
        """Start `python -m app.worker` as `name`; the worker's RQ name, once it listens."""
        worker = self.start(name, "-m", "app.worker", **env)

        def listening() -> str | None:
            if worker.poll() is not None:
                pytest.fail(f"the worker exited with {worker.returncode}:\n{self.log(name)}")
            found = re.search(r"Worker (\w+) taking jobs from", self.log(name))
            return found.group(1) if found else None

        worker_name: str = wait_until(listening, f"{name} to start", timeout=60)
        return worker_name

    def kill(self, name: str) -> None:
        """SIGKILL `name`: no clean-up of any kind, as when a machine is lost."""
        process = self.processes.pop(name)
        process.kill()
        process.wait(timeout=10)

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def drop_connections(self) -> int:
        """End every server process connected to the app's database, waiting until they are
        gone; how many there were."""
        ended = psql(
            "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
            f"WHERE datname = '{self.database}' AND pid <> pg_backend_pid()"
        )
        return int(ended)


def through(gate: Gate, database: str) -> str:
    """POSTGRES_SERVER's URL for `database`, by way of `gate`."""
    server = urlsplit(POSTGRES_SERVER)
    credentials = server.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{gate.port}" if credentials else f"127.0.0.1:{gate.port}"
    return server._replace(netloc=netloc, path=f"/{database}").geturl()


def start_moto(python: str, env: dict[str, str], logs: Path, cleanup: ExitStack) -> str:
    """moto's S3 server with the bucket made; its URL. `cleanup` stops it."""
    port = free_port()
    log = (logs / "moto.log").open("ab")
    process = subprocess.Popen(
        [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=log,
        stderr=log,
    )
    log.close()
    cleanup.callback(stop_process, process)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(f"{url}/moto-api/", timeout=2).ok, "moto's S3 server")
    # moto does not check signatures unless asked, so the bucket is made without boto3.
    requests.put(f"{url}/{BUCKET}", timeout=10).raise_for_status()
    return url


def project_python_env(project: Path, project_env: ProjectEnv) -> dict[str, str]:
    """The shared venv, synced to `project` (dev dependencies included), and its env."""
    project_env.run(project, "python", "-c", "import app, moto", python_version=PYTHON_VERSION)
    return project_env.env(PYTHON_VERSION)


@contextmanager
def launch(
    project: Path,
    project_env: ProjectEnv,
    workdir: Path,
    *,
    redis_url: str,
    worker: bool = True,
    **settings: str,
) -> Iterator[Stack]:
    """The whole stack, migrated, with an owner, the API and (unless told) the worker."""
    base_env = project_python_env(project, project_env)
    python = str(Path(base_env["UV_PROJECT_ENVIRONMENT"]) / "bin" / "python")
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as cleanup:
        database = cleanup.enter_context(fresh_database("dayone_e2e"))
        moto_url = start_moto(python, base_env, logs, cleanup)
        s3 = Gate("127.0.0.1", int(moto_url.rsplit(":", 1)[1]))
        s3.open()
        cleanup.callback(s3.close)
        server = urlsplit(POSTGRES_SERVER)
        postgres = Gate(server.hostname or "127.0.0.1", server.port or 5432)
        postgres.open()
        cleanup.callback(postgres.close)
        smtp = SmtpServer(Mailbox())
        smtp.start()
        cleanup.callback(smtp.stop)
        stack = Stack(
            project / "backend",
            base_env,
            logs,
            database=database,
            redis_url=redis_url,
            s3=s3,
            postgres=postgres,
            smtp=smtp,
            **settings,
        )
        cleanup.callback(stack.stop_all)
        stack.run("-m", "alembic", "upgrade", "head")
        stack.run("-m", "app.cli", "create-owner", "--if-none")
        stack.start_api()
        if worker:
            stack.start_worker()
        yield stack


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
