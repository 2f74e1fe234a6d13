"""The day-one command end to end on a freshly generated project: one command and the
API answers; a second run changes nothing and says so."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from net import free_port, health
from template_tools import UV, ProjectEnv

pytestmark = pytest.mark.slow

OWNER_PASSWORD = "a long and unguessable owner passphrase"


def day_one_until_healthy(project: Path, env: dict[str, str], port: int) -> str:
    """Run the README's day-one command; once /health answers 200, stop it as Ctrl+C
    would and return everything it printed."""
    process = subprocess.Popen(
        [UV, "run", "--project", "backend", "python", "-m", "tools.day_one", "--non-interactive"],
        cwd=project,
        env={**env, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while health(port) is None:
            if process.poll() is not None:
                pytest.fail(
                    f"day_one exited with {process.returncode}:\n{process.communicate()[0]}"
                )
            if time.monotonic() > deadline:
                pytest.fail("the API did not answer within 240 s")
            time.sleep(0.25)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert health(port) is None, "the API must stop with the command"
    return output


def test_day_one_local_runs_the_app_and_a_second_run_changes_nothing(
    render: Callable[..., Path], project_env: ProjectEnv
) -> None:
    project = render(project_name="Day One", owner_email="owner@dayone.example.com")
    env = project_env.env("3.11", OWNER_PASSWORD=OWNER_PASSWORD)
    # The developer's shell must not steer the check (the project's .env decides).
    for name in ("DATABASE_URL", "REDIS_URL", "DEPLOY_TARGET", "PORT", "SECRET_KEY"):
        env.pop(name, None)

    first = day_one_until_healthy(project, env, free_port())
    assert "target local (from the questionnaire's answer)" in first
    assert "Migrated the database from an empty schema" in first
    assert "Created the owner account owner@dayone.example.com." in first
    assert "API docs: http://127.0.0.1:" in first
    assert "Stopping." in first

    second = day_one_until_healthy(project, env, free_port())
    assert "Nothing needed changing: everything was already set up." in second
    assert "already in place: .env exists" in second
    assert "changed:" not in second

    status = subprocess.run(
        [UV, "run", "--project", "backend", "python", "-m", "tools.day_one", "status"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "target local" in status.stdout
    assert "API: http://127.0.0.1:" in status.stdout
