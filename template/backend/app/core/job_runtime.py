"""What the jobs of one process share: the settings, an event loop, a database engine
and the clients services make (storage), each made on first use and reused by every
later job, so that a job pays for its own work and not for connecting.

A worker runs every job on its process's runtime. Connections must not cross a fork, so
a forked child makes its own. A job run inline, by the API after a response, gets a
runtime of its own that closes when the job ends: the API's threads share no loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.config import Settings, get_settings
from app.core.db import create_engine, create_read_sessionmaker, create_sessionmaker

T = TypeVar("T")


class JobRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self._runner = asyncio.Runner()
        self._engine: AsyncEngine | None = None
        self._autocommit: AsyncEngine | None = None
        self._sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self._read_sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self._clients: dict[str, Any] = {}

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on this runtime's event loop, where its connections live.

        It runs in the caller's context, so that it sees the current job (RQ keeps it in
        a context variable). A job stopped from outside (its timeout, a signal) leaves
        nothing running on the loop that a later job would resume."""
        try:
            return self._runner.run(work, context=contextvars.copy_context())
        except BaseException:
            self._cancel_leftovers()
            raise

    def _cancel_leftovers(self) -> None:
        loop = self._runner.get_loop()
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = create_engine(self.settings)
        return self._engine

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        if self._sessionmaker is None:
            self._sessionmaker = create_sessionmaker(self.engine)
        return self._sessionmaker

    @property
    def read_sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        """Sessions that only read, without a transaction where the database allows it
        (app/core/db.py): a job's lookup costs one round trip."""
        if self._read_sessionmaker is None:
            self._read_sessionmaker = create_read_sessionmaker(self.engine) or self.sessionmaker
        return self._read_sessionmaker

    async def execute_alone(self, statement: Executable) -> None:
        """Run one statement by itself, which makes it atomic: outside a transaction on
        PostgreSQL (no BEGIN and COMMIT round trips), in a short one on SQLite."""
        if self.engine.dialect.name == "sqlite":
            async with self.engine.begin() as connection:
                await connection.execute(statement)
            return
        if self._autocommit is None:
            self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        async with self._autocommit.connect() as connection:
            await connection.execute(statement)

    def client(self, name: str, make: Callable[[], T]) -> T:
        """The client called `name`, made by `make` the first time it is asked for."""
        if name not in self._clients:
            self._clients[name] = make()
        return cast(T, self._clients[name])

    def close(self) -> None:
        if self._engine is not None:
            self._runner.run(self._engine.dispose())
        self._runner.close()


_process_runtime: JobRuntime | None = None
_inline_runtime: contextvars.ContextVar[JobRuntime | None] = contextvars.ContextVar(
    "inline_job_runtime", default=None
)


def job_runtime() -> JobRuntime:
    """The runtime the current job runs on."""
    global _process_runtime
    inline = _inline_runtime.get()
    if inline is not None:
        return inline
    if _process_runtime is None or _process_runtime.pid != os.getpid():
        _process_runtime = JobRuntime(get_settings())
    return _process_runtime


def close_job_runtime() -> None:
    """Close this process's runtime, if its jobs made one (the worker, as it exits)."""
    global _process_runtime
    if _process_runtime is not None and _process_runtime.pid == os.getpid():
        _process_runtime.close()
    _process_runtime = None


@contextmanager
def inline_runtime(settings: Settings) -> Iterator[JobRuntime]:
    """A runtime for one job run in the API, on the API's settings; closed after."""
    runtime = JobRuntime(settings)
    token = _inline_runtime.set(runtime)
    try:
        yield runtime
    finally:
        _inline_runtime.reset(token)
        runtime.close()
