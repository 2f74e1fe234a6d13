"""The API's documentation pages, Swagger UI at /docs and ReDoc at /redoc.

FastAPI's own pages load Swagger UI and ReDoc from a CDN and ReDoc's fonts from Google,
so they stay blank on a machine without internet. These are the same pages with every
file they load served by the app: the scripts, the stylesheet and the icon come from the
fastapi-offline package, which ships Swagger UI's and ReDoc's release bundles, so they
install and upgrade with the project's other dependencies. ReDoc uses the browser's fonts.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

SCHEMA_URL = "/openapi.json"
SWAGGER_URL = "/docs"
# Where Swagger UI's Authorize dialog returns to after an OAuth2 provider's login page.
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs/assets"
# The HTML pages, which run under the docs' Content-Security-Policy.
PAGES = (SWAGGER_URL, OAUTH2_REDIRECT_URL, REDOC_URL)


def root_path(request: Request) -> str:
    """The prefix a proxy serves the app under, so that the pages' links go through it."""
    prefix: str = request.scope.get("root_path", "")
    return prefix.rstrip("/")


def add_docs(app: FastAPI) -> None:
    """Serve the docs pages and their assets on `app`, whose schema is at SCHEMA_URL."""
    app.mount(
        ASSETS_URL,
        StaticFiles(packages=[("fastapi_offline", "static")]),
        name="docs-assets",
    )

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = root_path(request)
        return get_swagger_ui_html(
            openapi_url=root + SCHEMA_URL,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = root_path(request)
        return get_redoc_html(
            openapi_url=root + SCHEMA_URL,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )

    app.add_route(SWAGGER_URL, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_URL, oauth2_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc, include_in_schema=False)
