"""Measurements on a generated project, run in that project's own environment by run.py:

    <project>/backend/.venv/bin/python bench/measure.py <project> [--only NAME ...]

Prints one JSON object: {name: {"value", "unit", "how"}}. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx
from aiosmtpd.controller import Controller
from moto.server import ThreadedMotoServer
from redis import Redis
from rq import Queue

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
POSTGRES_SERVER = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
# Load: this many keep-alive connections for LOAD_SECONDS, after WARMUP_SECONDS unmeasured.
CONNECTIONS = 32
LOAD_SECONDS = 10.0
WARMUP_SECONDS = 2.0
SECRET_KEY = "bench-only-key-Vq8Lz3Rn6Tw1Yb4Km7Xc2Hf5Jd9Gs0Pa-Ue_Io"
PASSWORD = "a bench passphrase for the owner"
MIB = 1024 * 1024

Result = dict[str, Any]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Sink:
    """An SMTP server that notes when each message arrived (monotonic clock)."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.arrived:
            self.arrivals.append(time.monotonic())
            self.arrived.notify_all()
        return "250 Message accepted"

    def wait_for(self, count: int, timeout: float = 30) -> float:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.arrivals) >= count, timeout):
                raise TimeoutError(f"message {count} did not arrive within {timeout} s")
            return self.arrivals[count - 1]


class Stack:
    """The generated project's processes, each started with its own documented command."""

    def __init__(self, project: Path, workdir: Path, **settings: str) -> None:
        self.backend = project / "backend"
        # The app's own environment, without dev dependencies, as in the Docker image.
        self.python = str(self.backend / ".venv-app" / "bin" / "python")
        self.port = free_port()
        self.env = {
            **os.environ,
            # Production, as deployed: the schema is migrated by its own step (below),
            # not by the API as it starts.
            "ENVIRONMENT": "production",
            "SECRET_KEY": SECRET_KEY,
            "FRONTEND_URL": "https://app.example.test",
            "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
            "UPLOAD_DIR": str(workdir / "uploads"),
            "EMAIL_OUTBOX_DIR": str(workdir / "outbox"),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            # INFO, as deployed: the API writes its access line for every request.
            "LOG_LEVEL": "INFO",
            # As the Docker image sets them.
            "MALLOC_ARENA_MAX": "2",
            "MALLOC_MMAP_THRESHOLD_": "4194304",
            **settings,
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, *args: str, quiet: bool = False) -> subprocess.Popen[bytes]:
        # The children's output goes to stderr: stdout carries the results. Under load
        # the access log (a line per request) is thrown away instead.
        process = subprocess.Popen(
            [self.python, *args],
            cwd=self.backend,
            env=self.env,
            stdout=subprocess.DEVNULL if quiet else sys.stderr,
        )
        self.processes.append(process)
        return process

    def run(self, *args: str) -> None:
        subprocess.run(
            [self.python, *args], cwd=self.backend, env=self.env, stdout=sys.stderr, check=True
        )

    def start_api(self, *, quiet: bool = False) -> subprocess.Popen[bytes]:
        self.run("-m", "alembic", "upgrade", "head")
        api = self.start("-m", "app", quiet=quiet)
        wait_for_health(f"{self.url}/health")
        return api

    def owner_token(self, client: httpx.Client) -> str:
        self.run("-m", "app.cli", "create-owner", "--email", "owner@example.com", "--if-none")
        response = client.post(
            "/api/v1/auth/login", data={"username": "owner@example.com", "password": PASSWORD}
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_for_health(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within 60 s")


@contextmanager
def stack(project: Path, name: str, **settings: str) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as workdir:
        running = Stack(project, Path(workdir), OWNER_PASSWORD=PASSWORD, **settings)
        try:
            yield running
        finally:
            running.stop()


def memory_mib(pid: int, field: str) -> float:
    """VmRSS (resident now) or VmHWM (the most the process has had resident)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


class RssSampler(threading.Thread):
    """The highest VmRSS seen, sampled every 20 ms while running."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, memory_mib(self.pid, "VmRSS"))


def multipart_stream(boundary: str, size: int) -> Iterator[bytes]:
    """A multipart body holding a PNG-headed file of `size` bytes, made as it is sent."""
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    block = os.urandom(MIB)
    yield b"\x89PNG\r\n\x1a\n" + block[8:]
    for _ in range(size // MIB - 1):
        yield block
    yield f"\r\n--{boundary}--\r\n".encode()


def upload_once(
    client: httpx.Client, headers: dict[str, str], pid: int, size: int
) -> tuple[float, float, str]:
    """Upload `size` bytes and wait for process_file; (peak VmRSS, seconds, status)."""
    sampler = RssSampler(pid)
    sampler.start()
    started = time.perf_counter()
    files = files_path(client, headers)
    response = client.post(
        files,
        headers={**headers, "Content-Type": "multipart/form-data; boundary=bench"},
        content=multipart_stream("bench", size),
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    file_id = response.json()["id"]
    # Without Redis the process_file job runs in the API process and reads the object
    # back from S3: that counts too.
    status = "pending"
    while status == "pending":
        time.sleep(0.5)
        status = client.get(f"{files}/{file_id}", headers=headers).json()["status"]
    sampler.done.set()
    sampler.join()
    return sampler.peak, elapsed, status


def start_moto() -> tuple[ThreadedMotoServer, str]:
    """moto's S3 server on a free loopback port with the bucket "bench"; it and its URL."""
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    ).create_bucket(Bucket="bench")
    return moto, endpoint


def measure_upload_rss(project: Path) -> dict[str, Result]:
    moto, endpoint = start_moto()
    settings = {
        "S3_ENDPOINT_URL": endpoint,
        "S3_BUCKET": "bench",
        "S3_ACCESS_KEY_ID": "bench",
        "S3_SECRET_ACCESS_KEY": "bench",
        "S3_FORCE_PATH_STYLE": "true",
        "MAX_UPLOAD_BYTES": str(513 * MIB),
    }
    results: dict[str, Result] = {}
    try:
        with stack(project, "upload", **settings) as running:
            api = running.start_api()
            with httpx.Client(base_url=running.url, timeout=600) as client:
                headers = {"Authorization": f"Bearer {running.owner_token(client)}"}
                before = memory_mib(api.pid, "VmRSS")
                results["api_rss_before_upload"] = {
                    "value": round(before, 1),
                    "unit": "MiB",
                    "how": "VmRSS of the API (python -m app, production settings, no dev dependencies) after start-up and a login",
                }
                # A smaller file first: if memory followed the file's size, the two
                # growths would differ eightfold.
                for mib in (64, 512):
                    log(f"upload: sending {mib} MiB (chunked) to the API ...")
                    peak, seconds, status = upload_once(client, headers, api.pid, mib * MIB)
                    results[f"upload_{mib}mib_peak_rss"] = {
                        "value": round(peak, 1),
                        "unit": "MiB",
                        "how": f"highest VmRSS, sampled every 20 ms, while {mib} MiB streamed to moto's S3 server and process_file read it back (file {status})",
                    }
                    results[f"upload_{mib}mib_rss_growth"] = {
                        "value": round(peak - before, 1),
                        "unit": "MiB",
                        "how": "that peak minus the RSS before the first upload",
                    }
                    results[f"upload_{mib}mib_seconds"] = {
                        "value": round(seconds, 2),
                        "unit": "s",
                        "how": "the upload request, end to end",
                    }
                results["api_lifetime_peak_rss"] = {
                    "value": round(memory_mib(api.pid, "VmHWM"), 1),
                    "unit": "MiB",
                    "how": "VmHWM at the end, which also counts the login's Argon2id hash (19 MiB)",
                }
    finally:
        moto.stop()
    return results


def measure_email_latency(project: Path) -> dict[str, Result]:
    Redis.from_url(REDIS_URL).flushdb()
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings = {
        "REDIS_URL": REDIS_URL,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(controller.port),
        "SMTP_SECURITY": "none",
        "EMAIL_REQUEST_LIMIT_PER_ACCOUNT": "1000/hour",
        "EMAIL_REQUEST_LIMIT_PER_ADDRESS": "1000/hour",
    }
    latencies = []
    try:
        with stack(project, "email", **settings) as running:
            running.start_api()
            running.start("-m", "app.worker")
            with httpx.Client(base_url=running.url, timeout=30) as client:
                registered = client.post(
                    "/api/v1/auth/register", json={"email": "new@example.com", "password": PASSWORD}
                )
                registered.raise_for_status()
                sink.wait_for(1)  # the worker is up and has sent the welcome message
                for number in range(2, 22):
                    started = time.monotonic()
                    response = client.post(
                        "/api/v1/auth/request-verify", json={"email": "new@example.com"}
                    )
                    response.raise_for_status()
                    latencies.append(sink.wait_for(number) - started)
    finally:
        controller.stop()
    log(f"email: latencies {', '.join(f'{value * 1000:.0f}' for value in latencies)} ms")
    return {
        "request_verify_to_smtp_median": {
            "value": round(statistics.median(latencies) * 1000, 1),
            "unit": "ms",
            "how": "POST request-verify until aiosmtpd has the message, through Redis and one RQ worker; median of 20",
        },
        "request_verify_to_smtp_max": {
            "value": round(max(latencies) * 1000, 1),
            "unit": "ms",
            "how": "the slowest of the same 20",
        },
    }


def measure_login(project: Path) -> dict[str, Result]:
    # 51 logins from one address in a few seconds: over the default per-address limit.
    with stack(project, "login", LOGIN_LIMIT_PER_ADDRESS="1000/minute") as running:
        running.start_api()
        with httpx.Client(base_url=running.url, timeout=30) as client:
            running.owner_token(client)  # creates the account; the first login warms up
            durations = []
            for _ in range(50):
                started = time.perf_counter()
                response = client.post(
                    "/api/v1/auth/login",
                    data={"username": "owner@example.com", "password": PASSWORD},
                )
                durations.append(time.perf_counter() - started)
                response.raise_for_status()
    durations.sort()
    return {
        "login_p50": {
            "value": round(statistics.median(durations) * 1000, 1),
            "unit": "ms",
            "how": "POST /api/v1/auth/login over loopback, Argon2id m=19 MiB t=2 p=1, SQLite; median of 50 in a row",
        },
        "login_p99": {
            "value": round(durations[int(len(durations) * 0.99) - 1] * 1000, 1),
            "unit": "ms",
            "how": "the 99th percentile of the same 50",
        },
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # utime and stime, the 14th and 15th fields of the whole line, in clock ticks.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


WRK_INSTALL = "apt-get update && apt-get install -y wrk"


def wrk_binary() -> str:
    """wrk, installed from Debian's packages when it is missing and this may do so."""
    found = shutil.which("wrk")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        log("throughput: installing wrk (Debian package) ...")
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=sys.stderr)
        found = shutil.which("wrk")
    if found is None:
        raise SystemExit(f"the throughput benchmark needs wrk: {WRK_INSTALL}")
    return found


DURATION_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * DURATION_UNITS[unit]


def wrk_load(url: str, server_pid: int, headers: dict[str, str] | None = None) -> Result:
    """`wrk -t1 -c32 --latency` on `url` for LOAD_SECONDS, after WARMUP_SECONDS of the
    same unmeasured; the server's CPU time per request over the measured run too."""
    command = [wrk_binary(), "-t1", f"-c{CONNECTIONS}", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    subprocess.run([*command, f"-d{WARMUP_SECONDS:g}s", url], check=True, capture_output=True)
    before = cpu_seconds(server_pid)
    output = subprocess.run(
        [*command, f"-d{LOAD_SECONDS:g}s", url], check=True, capture_output=True, text=True
    ).stdout
    cpu = cpu_seconds(server_pid) - before
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    percentiles = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)$", output, re.MULTILINE))
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)$", output, re.MULTILINE)
    return {
        "requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "p50_ms": wrk_milliseconds(percentiles["50"]),
        "p99_ms": wrk_milliseconds(percentiles["99"]),
        "non_2xx": int(failed.group(1)) if failed else 0,
        "socket_errors": errors.group(1) if errors else "none",
        "cpu_ms_per_request": cpu * 1000 / requests,
    }


# The ceiling: FastAPI and uvicorn with nothing of the app, served the same way.
BARE_APP = """
from fastapi import FastAPI

app = FastAPI()


@app.get("/bare")
async def bare() -> dict[str, str]:
    return {"status": "ok"}
"""


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"dayone_bench_{uuid.uuid4().hex[:8]}"
    admin = ["psql", POSTGRES_SERVER, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c"]
    subprocess.run([*admin, f'CREATE DATABASE "{name}"'], check=True)
    try:
        yield POSTGRES_SERVER.rsplit("/", 1)[0] + f"/{name}"
    finally:
        subprocess.run([*admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], check=True)


LIST_SIZE = 50
ORG_PATH = "/api/v1/organizations/{org}"
# What the load runs, after the bare endpoint: (result name, path, what it is, the
# credential: the owner's access token or an owner API key of the organization).
ENDPOINTS = (
    (
        "users_me",
        "/api/v1/users/me",
        "GET /api/v1/users/me: JWT check and one PostgreSQL read",
        "jwt",
    ),
    (
        "users_list",
        f"/api/v1/users?limit={LIST_SIZE}",
        f"GET /api/v1/users?limit={LIST_SIZE} as the owner, {LIST_SIZE + 1} accounts",
        "jwt",
    ),
    (
        "files_list",
        f"{ORG_PATH}/files?limit={LIST_SIZE}",
        f"GET /api/v1/organizations/{{org_id}}/files?limit={LIST_SIZE} as its owner, {LIST_SIZE} files",
        "jwt",
    ),
    (
        "org_jwt",
        ORG_PATH,
        "GET /api/v1/organizations/{org_id} with the owner's access token (JWT)",
        "jwt",
    ),
    (
        "org_key",
        ORG_PATH,
        "GET /api/v1/organizations/{org_id} with an owner API key of it (keyed hash, its"
        " creator's role and the per-key budget checked)",
        "key",
    ),
)
# The per-key budget, spent on every request as in production, set out of the load's reach.
BENCH_API_KEY_LIMIT = "100000000/minute"


def files_path(client: httpx.Client, headers: dict[str, str]) -> str:
    """The path of the files of the caller's first organization (a new account's own)."""
    response = client.get("/api/v1/organizations", headers=headers)
    response.raise_for_status()
    return f"/api/v1/organizations/{response.json()['items'][0]['id']}/files"


# Run in the app's environment: LIST_SIZE more accounts and LIST_SIZE files of the owner
# (rows only: the list reads no file content), and the SQL statements each endpoint sends,
# counted in-process with the app's own engine.
SEED_AND_COUNT = """
import asyncio, json, sys, uuid
from httpx import ASGITransport, AsyncClient
from sqlalchemy import event, select
from app.core.config import get_settings
from app.main import create_app
from app.models import File, Membership, User

size, requests = int(sys.argv[1]), json.loads(sys.argv[2])

async def main():
    app = create_app(get_settings())
    async with app.router.lifespan_context(app):
        async with app.state.sessionmaker.begin() as session:
            owner = (await session.scalars(select(User))).one()
            org = (await session.scalars(select(Membership.organization_id))).one()
            session.add_all(User(email=f"member{n}@example.com", hashed_password="x") for n in range(size))
            session.add_all(
                File(organization_id=org, owner_id=owner.id, object_key=f"uploads/{uuid.uuid4().hex}", original_name=f"notes-{n}.txt",
                     content_type="text/plain", size=n, checksum_sha256="0" * 64)
                for n in range(size)
            )
        sent = []
        event.listen(app.state.engine.sync_engine, "before_cursor_execute", lambda *args: sent.append(args[2]))
        counts = {}
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://bench") as client:
            for name, path, token in requests:
                # The second request: a key's first one also records its use.
                for _ in range(2):
                    sent.clear()
                    response = await client.get(path, headers={"Authorization": f"Bearer {token}"})
                    response.raise_for_status()
                counts[name] = len(sent)
    print(json.dumps(counts))

asyncio.run(main())
"""


def serve_bare(project: Path, directory: str) -> tuple[subprocess.Popen[bytes], int]:
    """The bare app under uvicorn in the app's own environment, and its port."""
    Path(directory, "bare_app.py").write_text(BARE_APP)
    port = free_port()
    python = str(project / "backend" / ".venv-app" / "bin" / "python")
    # uvicorn's defaults, as `python -m app` runs it: one worker, its access log on.
    server = subprocess.Popen(
        [python, "-m", "uvicorn", "bare_app:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return server, port


def measure_throughput(project: Path) -> dict[str, Result]:
    """The bare endpoint and the app's, one after the other in the same run: the bare
    one is the ceiling each figure of the app's is a share of."""
    wrk_binary()
    figures: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as bare_dir:
        bare, port = serve_bare(project, bare_dir)
        try:
            wait_for_health(f"http://127.0.0.1:{port}/bare")
            log(f"throughput: wrk, {CONNECTIONS} connections, a bare FastAPI endpoint ...")
            figures["bare"] = wrk_load(f"http://127.0.0.1:{port}/bare", bare.pid)
        finally:
            bare.terminate()
            bare.wait(timeout=30)
    with (
        postgres_database() as database_url,
        stack(
            project,
            "throughput",
            DATABASE_URL=database_url,
            API_KEY_LIMIT_PER_KEY=BENCH_API_KEY_LIMIT,
        ) as running,
    ):
        api = running.start_api(quiet=True)
        with httpx.Client(base_url=running.url, timeout=30) as client:
            token = running.owner_token(client)
            files = files_path(client, {"Authorization": f"Bearer {token}"})
            org = files.removeprefix("/api/v1/organizations/").removesuffix("/files")
            created = client.post(
                f"/api/v1/organizations/{org}/api-keys",
                headers={"Authorization": f"Bearer {token}"},
                json={"name": "bench", "role": "owner", "password": PASSWORD},
            )
            created.raise_for_status()
        credentials = {"jwt": token, "key": created.json()["secret"]}
        endpoints = [
            (name, path.format(org=org), what, credentials[credential])
            for name, path, what, credential in ENDPOINTS
        ]
        requests = [[name, path, secret] for name, path, _what, secret in endpoints]
        # The measuring environment's Python: the counting client is httpx's.
        counted = subprocess.run(
            [sys.executable, "-c", SEED_AND_COUNT, str(LIST_SIZE), json.dumps(requests)],
            cwd=running.backend,
            env=running.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if counted.returncode != 0:
            raise RuntimeError(f"seeding and counting statements failed:\n{counted.stderr}")
        statements = json.loads(counted.stdout)
        for name, path, _what, secret in endpoints:
            log(f"throughput: wrk, {CONNECTIONS} connections, GET {path} ({name}) ...")
            figures[name] = wrk_load(
                f"{running.url}{path}", api.pid, {"Authorization": f"Bearer {secret}"}
            )
    how = f"wrk -t1 -c{CONNECTIONS} --latency, {LOAD_SECONDS:g} s after {WARMUP_SECONDS:g} s of warm-up, one uvicorn worker, production settings, PostgreSQL"
    ceiling = figures["bare"]
    results: dict[str, Result] = {}
    described = [
        ("bare", "a bare FastAPI endpoint (the ceiling)"),
        *((name, what) for name, _path, what, _credential in ENDPOINTS),
    ]
    for name, what in described:
        measured = figures[name]
        if measured["non_2xx"] or measured["socket_errors"] != "none":
            raise RuntimeError(
                f"{name}: {measured['non_2xx']} non-2xx answers, socket errors: {measured['socket_errors']}"
            )
        results[f"{name}_requests_per_second"] = {
            "value": round(measured["requests_per_second"]),
            "unit": "req/s",
            "how": f"{what}; {how}",
        }
        results[f"{name}_p50"] = {
            "value": round(measured["p50_ms"], 2),
            "unit": "ms",
            "how": "median latency, from wrk",
        }
        results[f"{name}_p99"] = {
            "value": round(measured["p99_ms"], 2),
            "unit": "ms",
            "how": "99th percentile latency, from wrk",
        }
        results[f"{name}_server_cpu_per_request"] = {
            "value": round(measured["cpu_ms_per_request"], 3),
            "unit": "ms",
            "how": "the server process's user+system CPU time over the measured run, per request",
        }
        if name == "bare":
            continue
        results[f"{name}_share_of_bare"] = {
            "value": round(
                100 * measured["requests_per_second"] / ceiling["requests_per_second"], 1
            ),
            "unit": "%",
            "how": f"{name} requests/s as a share of the bare endpoint's, same run",
        }
        results[f"{name}_statements"] = {
            "value": statements[name],
            "unit": "statements",
            "how": "SQL statements one request sends (the same for any page size: tests/test_request_costs.py)",
        }
    results["org_key_to_jwt"] = {
        "value": round(
            100 * figures["org_key"]["requests_per_second"] / figures["org_jwt"]["requests_per_second"],
            1,
        ),
        "unit": "%",
        "how": "requests/s of one organization read with an API key as a share of the same read with a JWT, same run",
    }
    return results


class OtlpSink:
    """An OTLP/HTTP receiver on loopback that takes every export and keeps its size."""

    def __init__(self) -> None:
        received = self.received = [0, 0]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                received[0] += 1
                received[1] += len(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def measure_tracing(project: Path) -> dict[str, Result]:
    """GET /api/v1/users/me with tracing off and with it on, exporting every span to a
    receiver on this machine, one after the other on the same database."""
    wrk_binary()
    sink = OtlpSink()
    figures: dict[str, Result] = {}
    try:
        with postgres_database() as database_url:
            for name, settings in (
                ("untraced", {}),
                ("traced", {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url}),
            ):
                with stack(project, f"tracing-{name}", DATABASE_URL=database_url, **settings) as running:
                    api = running.start_api(quiet=True)
                    with httpx.Client(base_url=running.url, timeout=30) as client:
                        token = running.owner_token(client)
                    log(f"tracing: wrk, {CONNECTIONS} connections, GET /api/v1/users/me, tracing {name} ...")
                    figures[name] = wrk_load(
                        f"{running.url}/api/v1/users/me", api.pid, {"Authorization": f"Bearer {token}"}
                    )
    finally:
        sink.close()
    if not sink.received[0]:
        raise RuntimeError("tracing on, but the receiver got no export")
    for measured in figures.values():
        if measured["non_2xx"] or measured["socket_errors"] != "none":
            raise RuntimeError(f"non-2xx answers or socket errors: {measured}")
    how = f"GET /api/v1/users/me; wrk -t1 -c{CONNECTIONS} --latency, {LOAD_SECONDS:g} s after {WARMUP_SECONDS:g} s of warm-up, one uvicorn worker, production settings, PostgreSQL"
    results: dict[str, Result] = {}
    for name, what in (
        ("untraced", "tracing off (no OTLP endpoint)"),
        ("traced", "tracing on, every span exported over OTLP/HTTP to a receiver on this machine"),
    ):
        results[f"users_me_{name}_requests_per_second"] = {
            "value": round(figures[name]["requests_per_second"]),
            "unit": "req/s",
            "how": f"{what}; {how}",
        }
        results[f"users_me_{name}_p99"] = {
            "value": round(figures[name]["p99_ms"], 2),
            "unit": "ms",
            "how": "99th percentile latency, from wrk",
        }
        results[f"users_me_{name}_server_cpu_per_request"] = {
            "value": round(figures[name]["cpu_ms_per_request"], 3),
            "unit": "ms",
            "how": "the server process's user+system CPU time over the measured run, per request",
        }
    results["users_me_traced_to_untraced"] = {
        "value": round(
            100 * figures["traced"]["requests_per_second"] / figures["untraced"]["requests_per_second"], 1
        ),
        "unit": "%",
        "how": "requests/s with tracing on as a share of the same with it off, same run",
    }
    return results


def measure_jobs(project: Path) -> dict[str, Result]:
    """Latency and throughput of the RQ worker on a job that does nothing."""
    # Waiting for a result is a blocking read, longer than redis-py's default timeout.
    redis = Redis.from_url(REDIS_URL, socket_timeout=600)
    redis.flushdb()
    queue = Queue("default", connection=redis)
    with stack(project, "jobs", REDIS_URL=REDIS_URL) as running:
        running.start("-m", "app.worker")
        # The first job also waits for the worker to start: it is not counted.
        if queue.enqueue(time.sleep, 0).latest_result(timeout=60) is None:
            raise TimeoutError("the worker did not run a job within 60 s")
        latencies = []
        for _ in range(50):
            started = time.perf_counter()
            result = queue.enqueue(time.sleep, 0).latest_result(timeout=30)
            latencies.append(time.perf_counter() - started)
            if result is None or not result.type == result.Type.SUCCESSFUL:
                raise RuntimeError(f"the no-op job did not succeed: {result}")
        count = 500
        started = time.perf_counter()
        jobs = queue.enqueue_many([Queue.prepare_data(time.sleep, (0,)) for _ in range(count)])
        last = jobs[-1].latest_result(timeout=300)
        elapsed = time.perf_counter() - started
        if last is None or any(job.get_status() != "finished" for job in jobs):
            raise RuntimeError("not every job of the batch finished")
    redis.flushdb()
    return {
        "job_latency_p50": {
            "value": round(statistics.median(latencies) * 1000, 1),
            "unit": "ms",
            "how": "enqueue of a no-op job (time.sleep(0)) until its result is in Redis, one RQ worker (python -m app.worker); median of 50 in a row",
        },
        "job_latency_p99": {
            "value": round(percentile(latencies, 0.99) * 1000, 1),
            "unit": "ms",
            "how": "99th percentile of the same 50",
        },
        "jobs_per_second": {
            "value": round(count / elapsed, 1),
            "unit": "jobs/s",
            "how": f"{count} no-op jobs enqueued at once, until the last is done, one worker",
        },
    }


WORKER_BATCH = 300
WORKER_FILE_BYTES = 64 * 1024


def batch_rate(
    queue: Queue, calls: list[tuple[str, tuple[Any, ...]]], done: Callable[[], bool]
) -> float:
    """Jobs per second of the running worker on `calls`, all enqueued at once, until
    `done` holds (or every job finished)."""
    started = time.perf_counter()
    jobs = queue.enqueue_many([Queue.prepare_data(function, args) for function, args in calls])
    last = jobs[-1].latest_result(timeout=600)
    while not done():
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    failed = [job.id for job in jobs if job.get_status() != "finished"]
    if last is None or failed:
        raise RuntimeError(f"{len(failed)} of {len(jobs)} jobs did not finish")
    return len(jobs) / elapsed


def measure_worker(project: Path) -> dict[str, Result]:
    """Jobs per second of one worker on a backlog of each job the project has, against a
    job that does nothing, in the same run: what a job costs beyond RQ's own handling."""
    redis = Redis.from_url(REDIS_URL, socket_timeout=600)
    redis.flushdb()
    moto, endpoint = start_moto()
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    rates: dict[str, float] = {}
    try:
        with (
            postgres_database() as database_url,
            stack(
                project,
                "worker",
                DATABASE_URL=database_url,
                REDIS_URL=REDIS_URL,
                S3_ENDPOINT_URL=endpoint,
                S3_BUCKET="bench",
                S3_ACCESS_KEY_ID="bench",
                S3_SECRET_ACCESS_KEY="bench",
                S3_FORCE_PATH_STYLE="true",
                SMTP_HOST="127.0.0.1",
                SMTP_PORT=str(controller.port),
                SMTP_SECURITY="none",
            ) as running,
        ):
            running.start_api(quiet=True)
            with httpx.Client(base_url=running.url, timeout=60) as client:
                headers = {"Authorization": f"Bearer {running.owner_token(client)}"}
                content = b"\x89PNG\r\n\x1a\n" + os.urandom(WORKER_FILE_BYTES - 8)
                file_ids = []
                files = files_path(client, headers)
                for number in range(20):
                    response = client.post(
                        files,
                        headers=headers,
                        files={"file": (f"bench-{number}.png", content, "image/png")},
                    )
                    response.raise_for_status()
                    file_ids.append(response.json()["id"])
            running.start("-m", "app.worker")
            default = Queue("default", connection=redis)
            email = Queue("email", connection=redis)
            # The uploads' own jobs, and a warm-up: the worker is up and has run each kind.
            if default.enqueue(time.sleep, 0).latest_result(timeout=120) is None:
                raise TimeoutError("the worker did not run a job within 120 s")
            noop = [("time.sleep", (0,))] * WORKER_BATCH
            # process_file measures a stored file again (it is idempotent): a read of the
            # row, the object streamed back from S3 and hashed, an UPDATE.
            files = [
                ("app.services.file_service.process_file", (file_ids[n % len(file_ids)],))
                for n in range(WORKER_BATCH)
            ]
            mail = [
                (
                    "app.services.email_service.deliver_email",
                    (f"bench{n}@example.com", "password_changed", "Your password was changed", {}),
                )
                for n in range(WORKER_BATCH)
            ]
            for name, queue, calls, done in (
                ("noop", default, noop, lambda: True),
                ("process_file", default, files, lambda: True),
                ("send_email", email, mail, lambda: len(sink.arrivals) >= WORKER_BATCH),
                ("noop_again", default, noop, lambda: True),
            ):
                rates[name] = batch_rate(queue, calls, done)
                log(f"worker: {name} {rates[name]:.1f} jobs/s")
    finally:
        controller.stop()
        moto.stop()
        redis.flushdb()
    # The no-op is measured before and after the others; the ceiling is their mean.
    ceiling = (rates["noop"] + rates["noop_again"]) / 2
    how = f"{WORKER_BATCH} jobs enqueued at once, until the last is done, one worker (python -m app.worker) on PostgreSQL, Redis, moto's S3 and aiosmtpd"
    return {
        "worker_noop_per_second": {
            "value": round(ceiling, 1),
            "unit": "jobs/s",
            "how": f"time.sleep(0): {how}; mean of a batch before and one after the others",
        },
        "worker_process_file_per_second": {
            "value": round(rates["process_file"], 1),
            "unit": "jobs/s",
            "how": f"process_file of a 64 KiB file: {how}",
        },
        "worker_process_file_to_noop": {
            "value": round(100 * rates["process_file"] / ceiling, 1),
            "unit": "%",
            "how": "process_file's rate over the no-op's (target: 50 % or more)",
        },
        "worker_send_email_per_second": {
            "value": round(rates["send_email"], 1),
            "unit": "jobs/s",
            "how": f"send_email (the password-changed message, rendered and sent through SMTP): {how}, until aiosmtpd has them all",
        },
        "worker_send_email_to_noop": {
            "value": round(100 * rates["send_email"] / ceiling, 1),
            "unit": "%",
            "how": "send_email's rate over the no-op's",
        },
    }


MEASUREMENTS: dict[str, Callable[[Path], dict[str, Result]]] = {
    "login": measure_login,
    "upload": measure_upload_rss,
    "email": measure_email_latency,
    "throughput": measure_throughput,
    "tracing": measure_tracing,
    "jobs": measure_jobs,
    "worker": measure_worker,
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("project", type=Path)
    parser.add_argument("--only", nargs="+", choices=sorted(MEASUREMENTS))
    args = parser.parse_args()
    results: dict[str, Result] = {}
    for name in args.only or MEASUREMENTS:
        log(f"measuring {name} ...")
        results.update(MEASUREMENTS[name](args.project))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
