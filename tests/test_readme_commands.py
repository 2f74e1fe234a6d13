"""The commands both READMEs give, run as written on a fresh machine: a new HOME, an empty
uv cache, nothing of ours installed but uv.

One machine and one generated project serve the whole module, so uv's cache fills once.
The tests run in file order and go where a new user goes: generate the project, run it,
test it, day one, the development tools, and last the update, which must find a clean
tree after everything the commands before it wrote.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import pty
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from net import free_port, health
from template_tools import TEMPLATE_DIR, UV, git
from update_support import commit, copier_env, tag, versioned_template

pytestmark = pytest.mark.slow

SOURCE = "gh:ORG/dayone"
OWNER_PASSWORD = "a long and unguessable owner passphrase"
HEALTHY = b'{"status":"ok"}'
# The terminal's interrupt character: what pressing Ctrl+C types.
CTRL_C = b"\x03"
# The first `uv run` installs every dependency from PyPI into an empty cache, on a machine
# that may be running other heavy tests: waiting is generous, and never an assertion.
STARTUP_SECONDS = 600


def sh_blocks(readme: str) -> list[list[str]]:
    """The README's sh blocks, each as its command lines with comments and blanks removed."""
    blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.DOTALL)
    lines = ([line.split("  #")[0].strip() for line in block.splitlines()] for block in blocks)
    return [[line for line in block if line] for block in lines]


def shell_lines(readme: str, starts: str = "") -> list[str]:
    """Lines of the README's sh blocks that start with `starts`, comments removed."""
    return [line for block in sh_blocks(readme) for line in block if line.startswith(starts)]


def section(readme: str, title: str) -> str:
    """The README's text under the heading that starts with `title`, up to the next heading
    of any level (a `#` line inside a code block is a shell comment, not a heading)."""
    lines = readme.splitlines(keepends=True)
    start = None
    fenced = False
    for index, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#+ ", line):
            if start is not None:
                return "".join(lines[start:index])
            if line.lstrip("#").strip().startswith(title):
                start = index + 1
    assert start is not None, f"the README has no section {title!r}"
    return "".join(lines[start:])


def fresh_machine(home: Path) -> dict[str, str]:
    """The environment of a new user: their own HOME and caches, uv on PATH."""
    kept = ("PATH", "LANG", "LC_ALL", "TERM", "UV_NATIVE_TLS", "SSL_CERT_FILE", "SSL_CERT_DIR")
    env = {key: os.environ[key] for key in kept if key in os.environ}
    env["PATH"] = f"{Path(UV).parent}{os.pathsep}{env.get('PATH', os.defpath)}"
    env.update(
        HOME=str(home),
        # Python comes from the machine, as on a fresh one; nothing is downloaded but packages.
        UV_PYTHON_DOWNLOADS="never",
        UV_NO_PROGRESS="1",
    )
    return {**env, **{key: copier_env()[key] for key in copier_env() if key.startswith("GIT_")}}


def run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        shlex.split(command),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, (
        f"`{command}` exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
    )
    return result


def stop(process: subprocess.Popen[str]) -> None:
    """Stop whatever is left of `process` and its process group: first as a service
    manager would, so that it can stop what it started, then for good."""
    if process.poll() is not None:
        return
    # It may end between the poll and the signal.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def serve_until_ready(command: str, cwd: Path, env: dict[str, str], log: Path, ready: str) -> str:
    """Run a README command that serves the API until Ctrl+C, at a terminal; once /health
    answers and the command has printed `ready`, press Ctrl+C, check that it stopped
    cleanly and took the API with it, and return everything it printed.

    Ctrl+C is the terminal's: the kernel interrupts the whole foreground job, and uv, its
    stdin a terminal, leaves the signal to the program it runs. (A SIGINT sent to the
    job without a terminal reaches the program twice, since uv forwards it as well.)
    The API listens on a free port (PORT, which the app and day one read), so that other
    tests serving at the same time do not collide with it."""
    port = free_port()
    controller, terminal = pty.openpty()
    with log.open("w") as output:
        process = subprocess.Popen(
            # A session of its own whose controlling terminal is stdin, the pseudo-terminal,
            # as a terminal window starts its shell. (setsid forks only when it leads a
            # process group, which a child of this process does not: its pid is the job's.)
            ["setsid", "--ctty", *shlex.split(command)],
            cwd=cwd,
            env={**env, "PORT": str(port)},
            stdin=terminal,
            # A file, not the terminal or a pipe: nobody reads the output while it
            # serves, and a full buffer would block the server.
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        os.close(terminal)
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while health(port) != HEALTHY or ready not in log.read_text():
                if process.poll() is not None:
                    pytest.fail(
                        f"`{command}` exited {process.returncode} before it was ready:\n"
                        f"{log.read_text()[-6000:]}"
                    )
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"`{command}` was not ready within {STARTUP_SECONDS} s:\n"
                        f"{log.read_text()[-6000:]}"
                    )
                time.sleep(0.25)
            os.write(controller, CTRL_C)
            process.wait(timeout=120)
        finally:
            stop(process)
            os.close(controller)
    printed = log.read_text()
    assert process.returncode == 0, f"`{command}` exited {process.returncode} on Ctrl+C:\n{printed}"
    assert health(port) is None, f"`{command}` left the API running"
    return printed


@dataclass(frozen=True)
class Machine:
    """A fresh machine with one project generated from the template README's command."""

    env: dict[str, str]
    template: Path
    project: Path
    # Outside the project, whose tree the update needs clean.
    logs: Path

    @property
    def readme(self) -> str:
        return (self.project / "README.md").read_text()


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Machine:
    root = tmp_path_factory.mktemp("fresh-machine")
    home = root / "home"
    home.mkdir()
    logs = root / "logs"
    logs.mkdir()
    env = fresh_machine(home)
    template = versioned_template(root / "template")

    # The template README's first command; `pip install uv &&` is what put uv on PATH.
    [generate] = shell_lines((TEMPLATE_DIR / "README.md").read_text(), "pip install uv && uvx")
    command = generate.removeprefix("pip install uv && ")
    assert SOURCE in command
    command = command.replace(SOURCE, str(template)).replace(" myapp", f" {root / 'myapp'}")
    # No terminal here to answer the questions: their defaults are the answers.
    run(f"{command} --defaults", root, env)
    return Machine(env=env, template=template, project=root / "myapp", logs=logs)


def test_the_template_readmes_command_generates_a_committed_project(machine: Machine) -> None:
    assert (machine.project / ".copier-answers.yml").is_file()
    assert git(machine.project, "status", "--porcelain") == ""


def test_the_readmes_run_command_serves_the_api_on_sqlite(machine: Machine) -> None:
    [serve, _] = sh_blocks(section(machine.readme, "Quick start"))[0]
    assert "python -m app" in serve
    serve_until_ready(
        serve, machine.project, machine.env, machine.logs / "run.log", ready="Uvicorn running"
    )
    # The embedded default the README describes: a SQLite database in backend/data/.
    assert (machine.project / "backend" / "data" / "app.db").is_file()


def test_the_readmes_test_command_passes(machine: Machine) -> None:
    [_, suite] = sh_blocks(section(machine.readme, "Quick start"))[0]
    assert suite.endswith(" pytest")
    result = run(suite, machine.project, machine.env)
    assert " passed" in result.stdout


def test_the_readmes_day_one_command_sets_up_and_serves_the_local_target(
    machine: Machine,
) -> None:
    [day_one, status] = sh_blocks(section(machine.readme, "Day one"))[0]
    assert "tools.day_one" in day_one
    assert status == f"{day_one} status"
    # The one question day one has for the local target, answered ahead as the README says.
    env = {**machine.env, "OWNER_PASSWORD": OWNER_PASSWORD}
    output = serve_until_ready(
        day_one, machine.project, env, machine.logs / "day-one.log", ready="press Ctrl+C to stop"
    )
    assert "target local" in output
    assert "Created the owner account" in output

    recorded = run(status, machine.project, machine.env)
    assert "target local" in recorded.stdout
    assert "API: http://127.0.0.1:" in recorded.stdout


def test_the_readmes_development_commands_pass(machine: Machine) -> None:
    """Each line of the Development blocks, in order, from the project root as every
    block of the README is; PostgreSQL and Redis come later, under their own heading."""
    outputs = {}
    for block in sh_blocks(section(machine.readme, "Development")):
        cwd = machine.project
        for line in block:
            if line.startswith("cd "):
                cwd = cwd / line.removeprefix("cd ")
            elif "revision --autogenerate" in line:
                # For after a model change: with models and migrations in agreement it
                # writes an empty revision. It runs as written, and what it wrote goes
                # again, for the tree the update needs clean.
                versions = machine.project / "backend" / "alembic" / "versions"
                before = set(versions.glob("*.py"))
                outputs[line] = run(line, cwd, machine.env).stdout
                [written] = set(versions.glob("*.py")) - before
                message = shlex.split(line)[shlex.split(line).index("-m") + 1]
                assert message in written.read_text()
                written.unlink()
            else:
                result = run(line, cwd, machine.env)
                outputs[line] = result.stdout + result.stderr
    ran = " ".join(outputs)
    for tool in ("ruff check", "ruff format --check", "mypy", "alembic upgrade head"):
        assert tool in ran
    [check] = [line for line in outputs if line.endswith("alembic check")]
    assert "No new upgrade operations detected" in outputs[check]
    [install] = [line for line in outputs if line.endswith("pre-commit install")]
    assert (machine.project / ".git" / "hooks" / "pre-commit").is_file(), outputs[install]


def raw_sh_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)


def chunks(block: str) -> list[str]:
    """A block's commands, cut where a comment line starts a new step (what comes after
    it may need what the step before did: an email to arrive)."""
    parts: list[list[str]] = [[]]
    for line in block.splitlines():
        if line.startswith("#"):
            parts.append([])
        else:
            parts[-1].append(line)
    return ["\n".join(part) for part in parts if "".join(part).strip()]


def outbox_token(project: Path, address: str, subject_part: str) -> str:
    """The token in the newest email to `address` whose subject has `subject_part`,
    waiting for it: the app sends its email after the answer."""
    outbox = project / "backend" / "data" / "outbox"
    deadline = time.monotonic() + 30
    while True:
        found = []
        for path in outbox.glob("*.eml"):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if message["To"] == address and subject_part in message["Subject"]:
                found.append((path.stat().st_mtime_ns, message))
        if found:
            break
        assert time.monotonic() < deadline, f"no email to {address} about {subject_part!r}"
        time.sleep(0.1)
    body = max(found, key=lambda item: item[0])[1].get_body(preferencelist=("plain",))
    assert body is not None
    token = re.search(r"#token=([A-Za-z0-9_-]+)", body.get_content())
    assert token, body.get_content()
    return token.group(1)


CURL_SHIM = """#!/bin/sh
# The README's curl, failing on an error status as a reader would notice one.
exec {curl} --fail-with-body --show-error "$@"
"""


def test_the_readmes_curl_examples_work_against_the_running_api(
    machine: Machine, tmp_path: Path
) -> None:
    """Every sh block with curl in the README, chunk by chunk in bash, against the API
    served as the README serves it, with the accounts and tokens the blocks name."""
    readme = machine.readme
    blocks = [block for block in raw_sh_blocks(readme) if "curl " in block]
    assert len(blocks) >= 4, blocks
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    [serve, _] = sh_blocks(section(readme, "Quick start"))[0]
    log = machine.logs / "curl-api.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            shlex.split(serve),
            cwd=machine.project,
            env={**machine.env, "PORT": str(port)},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while health(port) != HEALTHY:
            assert process.poll() is None, log.read_text()[-6000:]
            assert time.monotonic() < deadline, log.read_text()[-6000:]
            time.sleep(0.25)
        env = curl_env(machine, tmp_path, base)
        (tmp_path / "invoice.pdf").write_bytes(
            b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"
        )
        for block in blocks:
            for chunk in chunks(block):
                if "$INVITATION_TOKEN" in chunk:
                    env["INVITATION_TOKEN"] = outbox_token(
                        machine.project, "grace@example.com", "invited"
                    )
                # One shell session, as a reader's: what a chunk assigns, the next one has.
                state = tmp_path / "state"
                script = f"set -a\n{chunk.replace('http://127.0.0.1:8000', base)}\nenv -0 > {state}"
                result = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", script],
                    cwd=tmp_path,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                assert result.returncode == 0, (
                    f"{chunk}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
                )
                pairs = state.read_text().split("\0")
                env = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
    finally:
        stop(process)
    assert git(machine.project, "status", "--porcelain") == ""


def curl_env(machine: Machine, tmp_path: Path, base: str) -> dict[str, str]:
    """What the blocks take as given: an owner's EMAIL and PASSWORD (and TOKEN), the
    owner's organization (ORG), a member of it (USER_ID) and Grace, an account that is
    not one yet (GRACE_TOKEN); curl failing on an error status, and jq."""
    owner = {"EMAIL": "curl-owner@example.com", "PASSWORD": OWNER_PASSWORD}
    run(
        f"uv run --directory backend python -m app.cli create-owner --email {owner['EMAIL']}",
        machine.project,
        {**machine.env, "OWNER_PASSWORD": OWNER_PASSWORD},
    )
    with requests.Session() as client:

        def call(method: str, path: str, **kwargs: Any) -> requests.Response:
            return client.request(method, f"{base}{path}", timeout=60, **kwargs)

        def sign_in(address: str) -> dict[str, str]:
            credentials = {"username": address, "password": OWNER_PASSWORD}
            answer = call("POST", "/api/v1/auth/login", data=credentials)
            assert answer.status_code == 200, answer.text
            return {"Authorization": f"Bearer {answer.json()['access_token']}"}

        def new_account(address: str) -> dict[str, str]:
            body = {"email": address, "password": OWNER_PASSWORD}
            answer = call("POST", "/api/v1/auth/register", json=body)
            assert answer.status_code == 202, answer.text
            token = outbox_token(machine.project, address, "Confirm")
            assert call("POST", "/api/v1/auth/verify", json={"token": token}).status_code == 204
            return sign_in(address)

        owner_headers = sign_in(owner["EMAIL"])
        org = call("GET", "/api/v1/organizations", headers=owner_headers).json()["items"][0]["id"]
        member = new_account("lin@example.com")
        invited = call(
            "POST",
            f"/api/v1/organizations/{org}/invitations",
            headers=owner_headers,
            json={"email": "lin@example.com"},
        )
        assert invited.status_code == 201, invited.text
        accept = {"token": outbox_token(machine.project, "lin@example.com", "invited")}
        joined = call("POST", "/api/v1/invitations/accept", headers=member, json=accept)
        assert joined.status_code == 200, joined.text
        user_id = call("GET", "/api/v1/users/me", headers=member).json()["id"]
        grace = new_account("grace@example.com")
    real_curl = shutil.which("curl")
    assert real_curl, "the README's examples need curl: apt-get install curl"
    assert shutil.which("jq"), "the README's examples need jq: apt-get install jq"
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "curl").write_text(CURL_SHIM.format(curl=real_curl))
    (shim / "curl").chmod(0o755)
    return {
        **machine.env,
        **owner,
        "PATH": f"{shim}{os.pathsep}{machine.env['PATH']}",
        "ORG": org,
        "USER_ID": user_id,
        "GRACE_TOKEN": grace["Authorization"].removeprefix("Bearer "),
    }


def test_the_readmes_update_command_takes_a_new_release_after_the_commands_above(
    machine: Machine,
) -> None:
    """Last on purpose: Copier refuses a dirty tree, so nothing the commands above wrote
    (the database, .venv, caches, day one's state) may show in `git status`."""
    project = machine.project
    assert git(project, "status", "--porcelain") == ""

    # A new template release, then the generated README's update command, as written.
    readme = machine.template / "template" / "README.md.jinja"
    readme.write_text(readme.read_text() + "\nA line the second release adds.\n")
    commit(machine.template, "v2")
    tag(machine.template, "v2")
    [update] = shell_lines(machine.readme, "uvx ")
    assert "copier update" in update and "--defaults" in update
    run(update, project, machine.env)
    assert "A line the second release adds." in machine.readme
    assert "_commit: v2" in (project / ".copier-answers.yml").read_text()
