"""The docs pages (app/api/docs.py): /docs and /redoc load everything from the app itself,
so that they render on a machine without internet, and production serves none of it
unless DOCS_ENABLED says so."""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.core.config import Environment, Settings
from tests.support import running_app

ASSETS = "/docs/assets"
# What each kind of URL the pages use must answer with; a browser refuses a script or a
# stylesheet of another type, since every answer carries `nosniff`.
CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
    "": "text/html",
}


def urls_in(page: str) -> list[str]:
    """Every URL in the page's markup and inline script: those in quotes that are a path,
    or that name a scheme or a host of their own."""
    return re.findall(r"""["']((?:/|[a-z][a-z0-9+.-]*:)[^"'\s]*)["']""", page)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_the_docs_pages_load_only_what_the_app_serves(client: AsyncClient, path: str) -> None:
    page = await client.get(path)
    assert page.status_code == 200
    urls = urls_in(page.text)
    assert any(url.endswith(".js") for url in urls), urls
    assert "/openapi.json" in urls
    for url in urls:
        # A path on this server: no scheme, and not "//host/...", which names a host.
        assert re.match(r"/(?!/)", url), f"{url} is off-site"
        response = await client.get(url)
        assert response.status_code == 200, url
        suffix = re.search(r"\.[a-z]+$", url)
        expected = CONTENT_TYPES[suffix.group() if suffix else ""]
        assert response.headers["content-type"].split(";")[0] == expected, url


async def test_the_assets_are_the_ones_the_package_ships(client: AsyncClient) -> None:
    shipped = files("fastapi_offline") / "static"
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        response = await client.get(f"{ASSETS}/{name}")
        assert response.status_code == 200, name
        assert response.content == (shipped / name).read_bytes(), name


async def test_the_swagger_page_returns_from_oauth2_logins(client: AsyncClient) -> None:
    page = (await client.get("/docs")).text
    assert "oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect'" in page
    redirect = await client.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200
    assert redirect.headers["content-type"].startswith("text/html")
    # The page hands the provider's answer back to the Swagger UI window that opened it.
    assert "window.opener.swaggerUIRedirectOauth2" in redirect.text


async def test_behind_a_path_prefix_the_pages_link_through_it(app: FastAPI) -> None:
    # A proxy that serves the app under /backend says so in the ASGI root_path.
    transport = ASGITransport(app=app, root_path="/backend")
    async with AsyncClient(transport=transport, base_url="http://testserver") as client:
        swagger_page = await client.get("/backend/docs")
        redoc_page = await client.get("/backend/redoc")
    swagger, redoc = swagger_page.text, redoc_page.text
    # The pages get the policy that lets them run, not the API's, which would blank them.
    for page in (swagger_page, redoc_page):
        assert "script-src 'self'" in page.headers["content-security-policy"]
    assert f"/backend{ASSETS}/swagger-ui-bundle.js" in swagger
    assert "url: '/backend/openapi.json'" in swagger
    assert f"/backend{ASSETS}/redoc.standalone.js" in redoc
    assert 'spec-url="/backend/openapi.json"' in redoc


@pytest.mark.parametrize(
    "path", [f"{ASSETS}/nothing.js", f"{ASSETS}/", f"{ASSETS}/%2e%2e/__init__.py"]
)
async def test_no_other_file_is_served_from_the_assets(client: AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_the_assets_are_read_only(client: AsyncClient) -> None:
    response = await client.post(f"{ASSETS}/swagger-ui.css", content=b"x")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_production_serves_no_docs_assets(settings: Settings) -> None:
    async with running_app(settings, ENVIRONMENT=Environment.PRODUCTION) as (_, client):
        for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
            assert (await client.get(f"{ASSETS}/{name}")).status_code == 404, name


async def test_docs_enabled_serves_the_assets_in_production(settings: Settings) -> None:
    overrides: dict[str, Any] = {"ENVIRONMENT": Environment.PRODUCTION, "DOCS_ENABLED": True}
    async with running_app(settings, **overrides) as (_, client):
        for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
            assert (await client.get(f"{ASSETS}/{name}")).status_code == 200, name
        assert (await client.get("/docs/oauth2-redirect")).status_code == 200
