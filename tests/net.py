"""Ports and waiting, for the tests that start the generated project's processes."""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
import requests


def free_port() -> int:
    """A port nothing listens on now, for a process the test is about to start."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def health(port: int, timeout: float = 5) -> bytes | None:
    """The body of a 2xx answer from /health on `port`, or None (nothing there yet, or an
    error status)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=timeout) as answer:
            return bytes(answer.read())
    except (OSError, http.client.HTTPException):
        return None


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30) -> Any:
    """Poll `condition` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except (OSError, requests.RequestException):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(0.1)


def wait_for_health(port: int, server: subprocess.Popen[str], timeout: float = 60) -> bytes:
    """Wait until the app `server` runs answers /health; fail with its output if it exits."""

    def answered() -> bytes | None:
        if server.poll() is not None:
            output = server.stdout.read() if server.stdout else ""
            pytest.fail(f"the app exited with {server.returncode}:\n{output}")
        return health(port, timeout=2)

    body: bytes = wait_until(answered, f"/health on port {port}", timeout)
    return body
