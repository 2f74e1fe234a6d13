"""The generated API's /docs and /redoc render in a real browser with no internet.

The default project's API runs as its README starts it; headless Chromium, whose name
lookups fail for every host but loopback, loads each page from it and prints the DOM
that the page's scripts built, with the page's console on stderr.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from net import free_port, wait_until
from template_tools import UV, ProjectEnv

pytestmark = pytest.mark.slow

# ReDoc's bundle always puts its vendor's logo from cdn.redoc.ly in the sidebar and hides
# the image when it fails to load; the docs' policy blocks it before any request is made.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture(scope="module")
def api(render: Callable[..., Path], project_env: ProjectEnv) -> Iterator[str]:
    """The base URL of the default project's API, served on SQLite."""
    project = render()
    port = free_port()
    env = project_env.env("3.11", PORT=str(port))
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    server = subprocess.Popen(
        [UV, "run", "--directory", str(project / "backend"), "python", "-m", "app"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: server.poll() is None and requests.get(f"{base}/health", timeout=2).ok,
            "the API answering /health",
            timeout=60,
        )
        yield base
    finally:
        server.terminate()
        server.wait(timeout=20)


def browse(url: str, profile: Path) -> tuple[str, list[str]]:
    """The DOM of `url` once its scripts have run, and what the page wrote to its console."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "chromium is not installed; this test renders /docs in it: "
            "apt-get install --no-install-recommends chromium (.ci/run does)"
        )
    result = subprocess.run(
        [
            chromium,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            # No host resolves, so anything the page fetched from elsewhere would fail.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--enable-logging=stderr",
            "--v=0",
            # The page fetches the schema after it loads: the DOM is printed once the page
            # has been idle, rather than at the load event.
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"chromium failed on {url}: {result.stderr[-3000:]}")
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return result.stdout, console


def test_swagger_ui_renders_offline(api: str, tmp_path: Path) -> None:
    dom, console = browse(f"{api}/docs", tmp_path / "profile")
    assert 'class="swagger-ui"' in dom, dom[-2000:]
    assert 'data-path="/api/v1/auth/login"' in dom, console
    assert "Authorize" in dom
    assert console == []


def test_redoc_renders_offline(api: str, tmp_path: Path) -> None:
    dom, console = browse(f"{api}/redoc", tmp_path / "profile")
    assert re.search(r"<h2[^>]*>(?:<a[^>]*></a>)?Login\s*</h2>", dom), console or dom[-2000:]
    assert "/api/v1/auth/login" in dom
    blocked_logo = [line for line in console if REDOC_LOGO in line and "blocked" in line]
    assert [line for line in console if line not in blocked_logo] == []
