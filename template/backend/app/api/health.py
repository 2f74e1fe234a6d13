"""Liveness and readiness probes.

/health answers as long as the process serves requests: platforms restart the app when it
fails. /health/ready checks the dependencies the app is configured to use (database,
Redis, file storage): load balancers stop sending traffic while it answers 503, and its
body names the failing part.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.storage import Storage

router = APIRouter(tags=["health"])

CheckStatus = Literal["ok", "failing", "not configured"]


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class CheckResult(BaseModel):
    status: CheckStatus
    detail: str | None = None


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    failing: list[str]
    checks: dict[str, CheckResult]


async def check_database(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def check_redis(url: str) -> None:
    client = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def run_check(check: Callable[[], Awaitable[None]], seconds: float) -> CheckResult:
    try:
        await asyncio.wait_for(check(), seconds)
    except TimeoutError:
        return CheckResult(status="failing", detail=f"no answer within {seconds:g} s")
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with its reason.
        return CheckResult(status="failing", detail=f"{type(exc).__name__}: {exc}")
    return CheckResult(status="ok")


@router.get("/health", response_model=Liveness)
async def liveness() -> Liveness:
    return Liveness()


@router.get(
    "/health/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency is failing"}},
)
async def readiness(request: Request, response: Response) -> Readiness:
    settings: Settings = request.app.state.settings
    timeout = settings.HEALTH_CHECK_TIMEOUT_SECONDS
    engine: AsyncEngine = request.app.state.engine
    checks: dict[str, CheckResult] = {
        "database": await run_check(lambda: check_database(engine), timeout),
    }
    redis_url = settings.REDIS_URL
    if redis_url is None:
        checks["redis"] = CheckResult(status="not configured")
    else:
        checks["redis"] = await run_check(lambda: check_redis(redis_url), timeout)
    storage: Storage | None = request.app.state.storage
    if storage is None:
        checks["storage"] = CheckResult(status="not configured")
    else:
        checks["storage"] = await run_check(storage.check, timeout)
    failing = [name for name, result in checks.items() if result.status == "failing"]
    if failing:
        response.status_code = 503
    return Readiness(status="unavailable" if failing else "ok", failing=failing, checks=checks)
