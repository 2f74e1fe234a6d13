"""The commands both READMEs give for generating and updating a project, run as written on
a fresh machine: a new HOME, an empty uv cache, nothing of ours installed but uv."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import TEMPLATE_DIR, UV, git
from update_support import commit, copier_env, tag, versioned_template

pytestmark = pytest.mark.slow

SOURCE = "gh:ORG/dayone"


def shell_lines(readme: str, starts: str) -> list[str]:
    """Lines of the README's sh blocks that start with `starts`, comments removed."""
    blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.DOTALL)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith(starts)]


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


def test_the_readmes_generate_and_update_commands_work_on_a_fresh_machine(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = fresh_machine(home)
    template = versioned_template(tmp_path / "template")

    # The template README's first command; `pip install uv &&` is what put uv on PATH.
    [generate] = shell_lines((TEMPLATE_DIR / "README.md").read_text(), "pip install uv && uvx")
    command = generate.removeprefix("pip install uv && ")
    assert SOURCE in command
    command = command.replace(SOURCE, str(template)).replace(" myapp", f" {tmp_path / 'myapp'}")
    # No terminal here to answer the questions: their defaults are the answers.
    run(f"{command} --defaults", tmp_path, env)
    project = tmp_path / "myapp"
    assert git(project, "status", "--porcelain") == ""

    # A new template release, then the generated README's update command, as written.
    readme = template / "template" / "README.md.jinja"
    readme.write_text(readme.read_text() + "\nA line the second release adds.\n")
    commit(template, "v2")
    tag(template, "v2")
    [update] = shell_lines((project / "README.md").read_text(), "uvx ")
    assert "copier update" in update and "--defaults" in update
    run(update, project, env)
    assert "A line the second release adds." in (project / "README.md").read_text()
    assert "_commit: v2" in (project / ".copier-answers.yml").read_text()
