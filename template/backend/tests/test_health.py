from __future__ import annotations

import pytest
from httpx import ASGITransport, AsyncClient

from app.core.config import Settings
from app.main import create_app

# Nothing listens on port 1 of the loopback interface: connections are refused at once.
REFUSED_REDIS_URL = "redis://127.0.0.1:1/0"
REFUSED_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:1/unreachable"


async def get_ready(settings: Settings, **overrides: object) -> tuple[int, dict[str, object]]:
    app = create_app(settings.model_copy(update=overrides))
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get("/health/ready")
    return response.status_code, response.json()


async def test_liveness(client: AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_checks_the_database_and_skips_unconfigured_redis(client: AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "failing": [],
        "checks": {
            "database": {"status": "ok", "detail": None},
            "redis": {"status": "not configured", "detail": None},
            "storage": {"status": "ok", "detail": None},
        },
    }


async def test_ready_names_an_unreachable_redis(settings: Settings) -> None:
    status, body = await get_ready(settings, REDIS_URL=REFUSED_REDIS_URL)
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["failing"] == ["redis"]
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks["database"]["status"] == "ok"
    assert checks["redis"]["status"] == "failing"
    assert "Error" in checks["redis"]["detail"]


async def test_ready_names_an_unreachable_database(settings: Settings) -> None:
    status, body = await get_ready(settings, DATABASE_URL=REFUSED_DATABASE_URL)
    assert status == 503
    assert body["failing"] == ["database"]


@pytest.mark.redis
async def test_ready_with_a_live_redis(settings: Settings, redis_url: str) -> None:
    status, body = await get_ready(settings, REDIS_URL=redis_url)
    assert status == 200
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks["redis"] == {"status": "ok", "detail": None}
