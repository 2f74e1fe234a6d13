"""Every error response has the same JSON shape: {"error": {code, message, details}}."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI, HTTPException
from httpx import ASGITransport, AsyncClient
from pydantic import BaseModel, Field

from app.core.config import Settings
from app.core.errors import error_code
from app.main import create_app


class Widget(BaseModel):
    name: str = Field(min_length=1)
    size: int


@pytest.fixture
async def demo_client(settings: Settings) -> AsyncIterator[AsyncClient]:
    app: FastAPI = create_app(settings)

    @app.post("/demo/widgets")
    async def create_widget(widget: Widget) -> Widget:
        return widget

    @app.get("/demo/teapot")
    async def teapot() -> None:
        raise HTTPException(status_code=418, detail="I only brew tea")

    @app.get("/demo/crash")
    async def crash() -> None:
        raise RuntimeError("database password is hunter2")

    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def test_unknown_route_is_a_json_404(demo_client: AsyncClient) -> None:
    response = await demo_client.get("/no/such/route")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "Not Found", "details": None}
    }


async def test_wrong_method_is_a_json_405(demo_client: AsyncClient) -> None:
    response = await demo_client.delete("/health")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_http_exception_keeps_its_message(demo_client: AsyncClient) -> None:
    response = await demo_client.get("/demo/teapot")
    assert response.status_code == 418
    assert response.json()["error"] == {
        "code": "i_m_a_teapot",
        "message": "I only brew tea",
        "details": None,
    }


async def test_validation_error_lists_each_field(demo_client: AsyncClient) -> None:
    response = await demo_client.post("/demo/widgets", json={"name": "", "size": "big"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    fields = {detail["field"]: detail["type"] for detail in error["details"]}
    assert fields == {"body.name": "string_too_short", "body.size": "int_parsing"}


async def test_malformed_json_is_a_422_not_a_500(demo_client: AsyncClient) -> None:
    response = await demo_client.post(
        "/demo/widgets", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_unhandled_error_hides_its_cause(demo_client: AsyncClient) -> None:
    response = await demo_client.get("/demo/crash")
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "code": "internal_error",
            "message": "An internal error occurred.",
            "details": None,
        }
    }
    assert "hunter2" not in response.text


async def test_openapi_docs_are_served(demo_client: AsyncClient) -> None:
    docs = await demo_client.get("/docs")
    assert docs.status_code == 200
    schema = (await demo_client.get("/openapi.json")).json()
    assert "/health/ready" in schema["paths"]


def test_error_codes_are_the_same_on_every_python() -> None:
    # Python 3.13 took RFC 9110's names for these; the codes clients read do not move.
    assert error_code(413) == "content_too_large"
    assert error_code(422) == "unprocessable_content"
    assert error_code(404) == "not_found"
    assert error_code(599) == "error"
