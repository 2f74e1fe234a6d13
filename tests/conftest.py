"""Shared fixtures for the template's tests.

`render(**answers)` renders the template (the working tree, uncommitted changes
included) with the given answers on top of the defaults, once per distinct set of
answers per session. `project_env` runs a generated project's own commands through uv
against one virtual environment per Python version, so dependencies install once.
The helpers behind them are in template_tools.py, which tests import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import PrivateRedis
from template_tools import RENDERED_FILES, ProjectEnv, copy_template


@pytest.fixture(scope="session")
def render(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    cache: dict[tuple[tuple[str, str], ...], Path] = {}

    def _render(**answers: Any) -> Path:
        key = tuple(sorted((name, repr(value)) for name, value in answers.items()))
        if key not in cache:
            destination = tmp_path_factory.mktemp("project") / "project"
            copy_template(destination, answers)
            RENDERED_FILES[destination] = sorted(
                path
                for path in destination.rglob("*")
                if path.is_file() and ".git" not in path.relative_to(destination).parts
            )
            cache[key] = destination
        return cache[key]

    return _render


@pytest.fixture(scope="session")
def project_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectEnv]:
    yield ProjectEnv(tmp_path_factory.mktemp("venvs"))


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """A redis-server of the module's own, which its tests may kill; the machine's shared
    Redis is never stopped."""
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()
