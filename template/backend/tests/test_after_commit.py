"""after_commit: an action runs once its transaction commits, never when it, or the
savepoint it was registered in, rolls back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from app.core.db import after_commit, session_scope


async def test_actions_follow_their_transaction_and_savepoint(app: FastAPI) -> None:
    ran: list[str] = []

    def note(name: str) -> Callable[[], Awaitable[None]]:
        async def action() -> None:
            ran.append(name)

        return action

    async with session_scope(app.state.sessionmaker) as session:
        await session.connection()
        after_commit(session, note("outer"))
        async with session.begin_nested():
            after_commit(session, note("released savepoint"))
        savepoint = await session.begin_nested()
        after_commit(session, note("rolled-back savepoint"))
        await savepoint.rollback()
        assert ran == []  # nothing before the commit
    assert ran == ["outer", "released savepoint"]

    ran.clear()
    try:
        async with session_scope(app.state.sessionmaker) as session:
            await session.connection()
            after_commit(session, note("rolled back"))
            raise RuntimeError("the block fails")
    except RuntimeError:
        pass
    assert ran == []
