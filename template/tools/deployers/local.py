"""local: the API (and a job worker when REDIS_URL is set) on this machine."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from .base import Check, Deployer, DeployState, Outcome, Printer, Step

HEALTH_TIMEOUT_SECONDS = 60


def wait_for_health(url: str, process: subprocess.Popen[Any], timeout: float) -> None:
    """Wait until `url` answers 200, failing early if the process that serves it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the API exited with status {process.returncode} before it answered; "
                "its output above says why"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own URL
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As uvicorn binds: a port left in TIME_WAIT by an earlier run counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def start(argv: Sequence[str], **options: Any) -> subprocess.Popen[Any]:
    """Start a program in a process group of its own, so that `stop` reaches whatever it
    starts in turn (npx starts node, which outlives npx when only npx is signalled)."""
    # The plan's own commands, never a shell.
    return subprocess.Popen(list(argv), start_new_session=True, **options)  # noqa: S603


def signal_group(process: subprocess.Popen[Any], signum: int) -> None:
    # ProcessLookupError: nothing of the group is left.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def stop(processes: list[subprocess.Popen[Any]]) -> None:
    """Stop each program and everything it started: gently (uvicorn and RQ finish their
    current work), then firmly. Also after the program itself has exited, since what it
    started may still run."""
    for process in processes:
        signal_group(process, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # Whatever ignored SIGTERM, or was left behind by a program that exited.
        signal_group(process, signal.SIGKILL)


class LocalDeployer(Deployer):
    name = "local"
    description = "the API on this machine, with a worker when REDIS_URL is set"

    @property
    def host(self) -> str:
        return self.project.setting("HOST") or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.project.setting("PORT") or 8000)

    @property
    def base_url(self) -> str:
        # 0.0.0.0 listens everywhere; the browser still reaches it on loopback.
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::"} else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    def prerequisites(self, *, execute: bool) -> list[Check]:
        return [
            Check(
                "the app's dependencies in this Python",
                all(importlib.util.find_spec(name) for name in ("fastapi", "uvicorn", "alembic")),
                "run the command through uv, which installs them: "
                "uv run --project backend python -m tools.day_one",
            ),
            Check(
                f"port {self.port} free on {self.host}",
                port_is_free(self.host, self.port),
                f"stop what listens there, or pick another port: --port {self.port + 1}",
            ),
        ]

    def plan(self) -> list[Step]:
        return self.local_steps()

    def local_steps(self) -> list[Step]:
        """The processes that serve the app on this machine."""
        steps = [Step("api", f"serve the API on {self.base_url}", (sys.executable, "-m", "app"))]
        if self.project.setting("REDIS_URL"):
            steps.append(
                Step(
                    "worker",
                    "run queued jobs (email, file processing)",
                    (sys.executable, "-m", "app.worker"),
                )
            )
        return steps

    def serve(self, say: Printer) -> Outcome:
        """Start the API (and the worker) and wait until /health answers."""
        env = {**os.environ, "HOST": self.host, "PORT": str(self.port)}
        outcome = Outcome()
        try:
            for step in self.local_steps():
                say(f"starting: {step.purpose}")
                outcome.processes.append(start(step.argv, cwd=self.project.backend, env=env))
            wait_for_health(f"{self.base_url}/health", outcome.processes[0], HEALTH_TIMEOUT_SECONDS)
        except BaseException:
            stop(outcome.processes)
            raise
        outcome.urls = {"API": self.base_url, "API docs": f"{self.base_url}/docs"}
        return outcome

    def run(self, say: Printer, state: DeployState, *, execute: bool) -> Outcome:
        return self.serve(say)
