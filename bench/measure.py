"""Measurements on a generated project, run in that project's own environment by run.py:

    <project>/backend/.venv/bin/python bench/measure.py <project> [--only NAME ...]

Prints one JSON object: {name: {"value", "unit", "how"}}. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
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
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
            "LOG_LEVEL": "WARNING",
            # As the Docker image sets it.
            "MALLOC_ARENA_MAX": "2",
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


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


class Load:
    """What the connections of one load run measured."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failures = 0


async def _keep_requesting(
    port: int, request: bytes, load: Load, measure_from: float, until: float
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (started := time.perf_counter()) < until:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            if started >= measure_from:
                load.latencies.append(time.perf_counter() - started)
                if head[9:12] != b"200":
                    load.failures += 1
    finally:
        writer.close()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # utime and stime, the 14th and 15th fields of the whole line, in clock ticks.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_endpoint(
    port: int, path: str, server_pid: int, headers: dict[str, str] | None = None
) -> Result:
    """CONNECTIONS keep-alive connections, each sending its next request as soon as the
    last answer is in, for LOAD_SECONDS after WARMUP_SECONDS.

    The client speaks HTTP/1.1 over asyncio streams with a request built once: a general
    HTTP client spends more CPU per request than the server under test, and on a small
    machine would measure itself. The server's CPU time per request is measured too: on a
    machine that is busy with other work it varies much less than requests/s.
    """
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    load = Load()
    cpu: list[float] = []

    async def sample_cpu(at: float) -> None:
        await asyncio.sleep(at - time.perf_counter())
        cpu.append(cpu_seconds(server_pid))

    async def run() -> None:
        start = time.perf_counter()
        measure_from = start + WARMUP_SECONDS
        until = measure_from + LOAD_SECONDS
        await asyncio.gather(
            sample_cpu(measure_from),
            sample_cpu(until),
            *(
                _keep_requesting(port, request, load, measure_from, until)
                for _ in range(CONNECTIONS)
            ),
        )

    asyncio.run(run())
    if load.failures:
        raise RuntimeError(f"{load.failures} answers to GET {path} were not 200")
    return {
        "requests_per_second": len(load.latencies) / LOAD_SECONDS,
        "p50_ms": statistics.median(load.latencies) * 1000,
        "p99_ms": percentile(load.latencies, 0.99) * 1000,
        "cpu_ms_per_request": (cpu[1] - cpu[0]) * 1000 / len(load.latencies),
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


def measure_throughput(project: Path) -> dict[str, Result]:
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as bare_dir:
        Path(bare_dir, "bare_app.py").write_text(BARE_APP)
        port = free_port()
        python = str(project / "backend" / ".venv-app" / "bin" / "python")
        # uvicorn's defaults, as `python -m app` runs it: one worker, its access log on.
        bare = subprocess.Popen(
            [python, "-m", "uvicorn", "bare_app:app", "--host", "127.0.0.1", "--port", str(port)],
            cwd=bare_dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_health(f"http://127.0.0.1:{port}/bare")
            log(f"throughput: {CONNECTIONS} connections on a bare FastAPI endpoint ...")
            ceiling = load_endpoint(port, "/bare", bare.pid)
        finally:
            bare.terminate()
            bare.wait(timeout=30)
    with (
        postgres_database() as database_url,
        stack(project, "throughput", DATABASE_URL=database_url) as running,
    ):
        api = running.start_api(quiet=True)
        with httpx.Client(base_url=running.url, timeout=30) as client:
            token = running.owner_token(client)
        log(f"throughput: {CONNECTIONS} connections on GET /api/v1/users/me ...")
        me = load_endpoint(
            running.port, "/api/v1/users/me", api.pid, {"Authorization": f"Bearer {token}"}
        )
    how = f"{CONNECTIONS} keep-alive connections from an asyncio client on loopback, {LOAD_SECONDS:g} s after {WARMUP_SECONDS:g} s of warm-up, one uvicorn worker"
    for name, figures, what in (
        ("bare", ceiling, "a bare FastAPI endpoint (the ceiling)"),
        ("users_me", me, "GET /api/v1/users/me, authenticated: JWT check and a PostgreSQL read"),
    ):
        results[f"{name}_requests_per_second"] = {
            "value": round(figures["requests_per_second"]),
            "unit": "req/s",
            "how": f"{what}; {how}",
        }
        results[f"{name}_p50"] = {
            "value": round(figures["p50_ms"], 2),
            "unit": "ms",
            "how": "median latency of the same requests",
        }
        results[f"{name}_p99"] = {
            "value": round(figures["p99_ms"], 2),
            "unit": "ms",
            "how": "99th percentile latency of the same requests",
        }
        results[f"{name}_server_cpu_per_request"] = {
            "value": round(figures["cpu_ms_per_request"], 3),
            "unit": "ms",
            "how": "the server process's user+system CPU time over the same window, per request",
        }
    results["users_me_share_of_bare"] = {
        "value": round(100 * me["requests_per_second"] / ceiling["requests_per_second"], 1),
        "unit": "%",
        "how": "users/me requests/s as a share of the bare endpoint's, same run",
    }
    results["users_me_share_of_bare_by_cpu"] = {
        "value": round(100 * ceiling["cpu_ms_per_request"] / me["cpu_ms_per_request"], 1),
        "unit": "%",
        "how": "the bare endpoint's server CPU per request as a share of users/me's: the requests/s share a core of its own would give",
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
            "how": "enqueue of a no-op job (time.sleep(0)) until its result is in Redis, one RQ worker (python -m app.worker, a forked work horse per job); median of 50 in a row",
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


MEASUREMENTS: dict[str, Callable[[Path], dict[str, Result]]] = {
    "login": measure_login,
    "upload": measure_upload_rss,
    "email": measure_email_latency,
    "throughput": measure_throughput,
    "jobs": measure_jobs,
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
