"""Measurements on a generated project, run in that project's own environment by run.py:

    <project>/backend/.venv/bin/python bench/measure.py <project> [--only NAME ...]

Prints one JSON object: {name: {"value", "unit", "how"}}. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import httpx
from aiosmtpd.controller import Controller
from moto.server import ThreadedMotoServer
from redis import Redis

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
SECRET_KEY = "bench-only-key-0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
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
            "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
            "UPLOAD_DIR": str(workdir / "uploads"),
            "EMAIL_OUTBOX_DIR": str(workdir / "outbox"),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "LOG_LEVEL": "WARNING",
            # As the Docker image sets it.
            "MALLOC_ARENA_MAX": "2",
            **settings,
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        # The children's output goes to stderr: stdout carries the results.
        process = subprocess.Popen(
            [self.python, *args], cwd=self.backend, env=self.env, stdout=sys.stderr
        )
        self.processes.append(process)
        return process

    def run(self, *args: str) -> None:
        subprocess.run(
            [self.python, *args], cwd=self.backend, env=self.env, stdout=sys.stderr, check=True
        )

    def start_api(self) -> subprocess.Popen[bytes]:
        self.run("-m", "alembic", "upgrade", "head")
        api = self.start("-m", "app")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return api
            except httpx.TransportError:
                time.sleep(0.1)
        raise TimeoutError("the API did not answer /health within 60 s")

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
    response = client.post(
        "/api/v1/files",
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
        status = client.get(f"/api/v1/files/{file_id}", headers=headers).json()["status"]
    sampler.done.set()
    sampler.join()
    return sampler.peak, elapsed, status


def measure_upload_rss(project: Path) -> dict[str, Result]:
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


MEASUREMENTS: dict[str, Callable[[Path], dict[str, Result]]] = {
    "login": measure_login,
    "upload": measure_upload_rss,
    "email": measure_email_latency,
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
