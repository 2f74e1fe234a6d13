"""Async SQLAlchemy engine and sessions.

One engine per application instance, created by the app factory and disposed when the
app shuts down, so that tests and several apps in one process never share connections.
"""

from __future__ import annotations

import select
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext import asyncio as sqlalchemy_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction

from app.core.config import Settings


def create_engine(settings: Settings) -> AsyncEngine:
    # Called through its module, where tracing's instrumentation puts its wrapper
    # (app/core/tracing.py), so that every engine made after tracing started is traced.
    create_async_engine = sqlalchemy_asyncio.create_async_engine
    url = settings.database_url
    if settings.is_sqlite:
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=settings.DATABASE_ECHO)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    engine = create_async_engine(
        url,
        echo=settings.DATABASE_ECHO,
        pool_size=settings.DATABASE_POOL_SIZE,
        max_overflow=0,
        pool_timeout=settings.DATABASE_POOL_TIMEOUT,
    )
    event.listen(engine.sync_engine, "checkout", _reject_closed_connection)
    return engine


def _reject_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Replace a pooled connection the server has closed (a restart, a failover, an
    administrator ending it) before a request gets it.

    An idle connection has nothing to read, as a rule: a server that ends it sends its
    reason and closes the socket. Either asyncpg has read that already (the connection is
    closed) or it waits in the socket for an event loop that was busy; a poll that does
    not wait sees it. This costs a system call, not the round trip of SQLAlchemy's
    pool_pre_ping. Anything else unread (a notice after a configuration reload) costs a
    reconnect. DisconnectionError makes the pool connect that slot again.
    """
    connection = dbapi_connection.driver_connection
    if connection.is_closed() or _has_unread_input(connection):
        raise DisconnectionError("the server closed this connection")


def _has_unread_input(connection: Any) -> bool:
    transport = getattr(connection, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or not hasattr(select, "poll"):  # poll is not on Windows
        return False
    try:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True  # a socket that cannot be polled is no connection to hand out


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # SQLite leaves foreign keys unenforced unless asked on every connection; WAL lets
    # readers proceed while one writer commits.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # Writers queue for the lock (see _sqlite_begin); on a busy machine a queue of them
    # can take seconds to pass, which beats "database is locked".
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    # The driver's own implicit BEGIN is turned off; _sqlite_begin takes over.
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Connection) -> None:
    # SQLite has one writer at a time. A transaction that reads first and writes later
    # cannot wait for a concurrent writer (it fails with "database is locked"), so each
    # transaction takes the write lock as it begins: requests queue for up to
    # busy_timeout instead of failing. PostgreSQL needs none of this.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


class ReadOnlyTransactionError(RuntimeError):
    """A write through a session that reads without a transaction."""


class ReadSession(Session):
    """A session whose statements each run on their own, outside a transaction: no BEGIN
    or COMMIT round trip. Only reads: a write would not be atomic, so it is refused."""


def _refuse_write(message: str) -> None:
    raise ReadOnlyTransactionError(
        f"{message} through a read-only session: requests that read (GET, HEAD) have no "
        "transaction; write in a POST, PUT, PATCH or DELETE route"
    )


@event.listens_for(ReadSession, "before_flush")
def _no_flush(session: Session, _context: Any, _instances: Any) -> None:
    _refuse_write("changed objects were flushed")


@event.listens_for(ReadSession, "do_orm_execute")
def _no_write_statement(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        _refuse_write("an INSERT, UPDATE or DELETE was sent")


def create_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession] | None:
    """Sessions for requests that only read, on PostgreSQL; None on SQLite, whose
    transactions cost no round trip (and take the write lock as they begin)."""
    if engine.dialect.name == "sqlite":
        return None
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    return async_sessionmaker(autocommit, expire_on_commit=False, sync_session_class=ReadSession)


# Work that must follow a commit: each action with the transaction it was registered in
# (a savepoint's, or the session's), until that transaction ends.
_PENDING = "after_commit_pending"
_COMMITTED = "after_commit_ready"


def after_commit(session: AsyncSession, action: Callable[[], Awaitable[None]]) -> None:
    """Have `action` run once the session's transaction has committed, and never if it
    rolls back (nor if the savepoint it was registered in does). session_scope runs it;
    a job that reads the transaction's rows, or that must not run for rows that were
    never saved, is enqueued this way."""
    sync = session.sync_session
    transaction = sync.get_nested_transaction() or sync.get_transaction()
    sync.info.setdefault(_PENDING, []).append((transaction, action))


@event.listens_for(Session, "after_commit")
def _commit_releases_pending(session: Session) -> None:
    pending = session.info.get(_PENDING, [])
    released = session.get_nested_transaction()
    if released is not None:
        # A savepoint was released: what it held now waits on the enclosing transaction.
        session.info[_PENDING] = [
            (released.parent if transaction is released else transaction, action)
            for transaction, action in pending
        ]
        return
    session.info.setdefault(_COMMITTED, []).extend(action for _, action in pending)
    session.info[_PENDING] = []


@event.listens_for(Session, "after_transaction_end")
def _rollback_drops_pending(session: Session, ended: SessionTransaction) -> None:
    # What is still registered in a transaction as it ends was rolled back with it.
    pending = session.info.get(_PENDING)
    if pending:
        session.info[_PENDING] = [entry for entry in pending if entry[0] is not ended]


async def _run_committed(session: AsyncSession) -> None:
    actions = session.sync_session.info.pop(_COMMITTED, [])
    for action in actions:
        await action()


@asynccontextmanager
async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session that commits when the block succeeds and rolls back otherwise; then
    what was deferred with after_commit runs, for the transactions that committed."""
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except Exception:
            await session.rollback()
            # A transaction the block committed before it failed keeps its follow-up.
            await _run_committed(session)
            raise
        except BaseException:
            await session.rollback()
            raise
        await _run_committed(session)
