"""The job runtime: the jobs of one process share one engine and one storage client, and a
forked child never touches its parent's connections."""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.connection import Connection

import pytest
from sqlalchemy import text

from app.core import job_runtime
from app.core.config import Settings
from app.core.job_runtime import JobRuntime
from app.services.file_service import job_storage


async def backend_pid(runtime: JobRuntime) -> int:
    """The database server process behind the connection the runtime's pool hands out."""
    async with runtime.sessionmaker() as session:
        return int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)


def test_the_jobs_of_a_process_reuse_its_engine_and_storage_client(settings: Settings) -> None:
    runtime = JobRuntime(settings)
    try:
        engines = {id(runtime.run(pool_of(runtime))) for _ in range(5)}
        clients = {id(job_storage(runtime)) for _ in range(5)}
    finally:
        runtime.close()
    assert len(engines) == 1
    assert len(clients) == 1


async def pool_of(runtime: JobRuntime) -> object:
    async with runtime.sessionmaker() as session:
        await session.execute(text("SELECT 1"))
    return runtime.engine


def in_child(parent_runtime: JobRuntime, answer: Connection) -> None:
    runtime = job_runtime.job_runtime()
    answer.send((runtime is parent_runtime, runtime.run(backend_pid(runtime))))


def test_a_forked_child_makes_its_own_runtime(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not settings.DATABASE_URL.startswith("postgresql"):
        pytest.skip("SQLite has no server process to tell connections apart")
    monkeypatch.setattr(job_runtime, "get_settings", lambda: settings)
    parent = JobRuntime(settings)
    monkeypatch.setattr(job_runtime, "_process_runtime", parent)
    try:
        assert job_runtime.job_runtime() is parent
        before = parent.run(backend_pid(parent))
        receiving, sending = multiprocessing.Pipe(duplex=False)
        child = multiprocessing.get_context("fork").Process(target=in_child, args=(parent, sending))
        child.start()
        shared, child_backend = receiving.recv()
        child.join(timeout=30)
        assert child.exitcode == 0
        assert not shared
        # The child connected for itself; the parent's connection is the one it had.
        assert child_backend not in {0, before}
        assert parent.run(backend_pid(parent)) == before
        assert parent.pid == os.getpid()
    finally:
        parent.close()
