"""On the embedded defaults, verification and reset can be finished from the console's
link, in a browser, with nothing but the API running; production serves no such page."""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from html.parser import HTMLParser

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.core.config import Environment, Settings
from app.models import User
from app.services.account_service import link_base
from app.services.email_service import ConsoleBackend, Email, build_message
from tests.support import PASSWORD, login, messages_to, register, running_app, text_body

PAGES = ["/dev/verify-email", "/dev/reset-password", "/dev/accept-invitation"]


class Page(HTMLParser):
    """The parts of a page a browser would act on."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.form: dict[str, str | None] = {}
        self.inputs: list[str | None] = []
        self.scripts: list[str] = []
        self.in_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "form":
            self.form = dict(attrs)
        elif tag == "input":
            self.inputs.append(dict(attrs).get("name"))
        elif tag == "script":
            self.in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.in_script = False

    def handle_data(self, data: str) -> None:
        if self.in_script:
            self.scripts[-1] += data


async def open_page(client: AsyncClient, path: str) -> Page:
    """The page, after checking that its CSP lets its own script run and nothing else."""
    response = await client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    page = Page(response.text)
    (script,) = page.scripts
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == f"'sha256-{digest}'"
    assert directives["default-src"] == "'none'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy
    # The middleware's other headers still come with it.
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    return page


def console_link(caplog: pytest.LogCaptureFixture, subject: str, to: str) -> str:
    lines = [
        record.getMessage()
        for record in caplog.records
        if record.getMessage().startswith(f"Email {subject!r} to {to}: open ")
    ]
    assert len(lines) == 1, lines
    return lines[0].rpartition(" open ")[2]


async def test_verification_is_finished_from_the_link_the_console_shows(
    client: AsyncClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app")
    await register(client, "ada@example.com")
    link = console_link(caplog, "Confirm your email address", "ada@example.com")
    # The link as the message body has it, decoded: the one a person copies.
    (message,) = messages_to(settings, "ada@example.com")
    assert link in text_body(message).split()
    assert link.startswith("http://127.0.0.1:8000/dev/verify-email#token=")
    path, _, fragment = link.removeprefix("http://127.0.0.1:8000").partition("#")
    page = await open_page(client, path)
    assert page.inputs == []
    token = fragment.removeprefix("token=")
    answer = await client.post(str(page.form["data-action"]), json={"token": token})
    assert answer.status_code == 204, answer.text
    tokens = await login(client, "ada@example.com")
    me = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.json()["is_verified"] is True


async def test_a_password_reset_is_finished_from_the_link_the_console_shows(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await register(client, "ada@example.com")
    caplog.set_level(logging.INFO, logger="app")
    requested = await client.post("/api/v1/auth/request-reset", json={"email": "ada@example.com"})
    assert requested.status_code == 202
    link = console_link(caplog, "Reset your password", "ada@example.com")
    assert link.startswith("http://127.0.0.1:8000/dev/reset-password#token=")
    path, _, fragment = link.removeprefix("http://127.0.0.1:8000").partition("#")
    page = await open_page(client, path)
    assert page.inputs == ["new_password"]
    new_password = "a brand new passphrase"
    body = {"token": fragment.removeprefix("token="), "new_password": new_password}
    answer = await client.post(str(page.form["data-action"]), json=body)
    assert answer.status_code == 204, answer.text
    await login(client, "ada@example.com", new_password)


async def test_an_invitation_is_accepted_from_the_link_the_console_shows(
    app: FastAPI, client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    owner = await register(client, "owner@example.com")
    tokens = await login(client, "owner@example.com")
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    await verify_directly(app, owner["id"])
    organization = (await client.get("/api/v1/organizations", headers=headers)).json()["items"][0]
    await register(client, "grace@example.com")
    grace = (await login(client, "grace@example.com"))["access_token"]
    me = (await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {grace}"})).json()
    await verify_directly(app, me["id"])
    caplog.set_level(logging.INFO, logger="app")
    invited = await client.post(
        f"/api/v1/organizations/{organization['id']}/invitations",
        json={"email": "grace@example.com"},
        headers=headers,
    )
    assert invited.status_code == 201, invited.text
    subject = f"You are invited to join {organization['name']}"
    link = console_link(caplog, subject, "grace@example.com")
    assert link.startswith("http://127.0.0.1:8000/dev/accept-invitation#token=")
    path, _, fragment = link.removeprefix("http://127.0.0.1:8000").partition("#")
    page = await open_page(client, path)
    assert page.inputs == ["username", "password"]
    # What the page's script does: sign in with the form, then send the token.
    signed_in = await client.post(
        str(page.form["data-login"]),
        data={"username": "grace@example.com", "password": PASSWORD},
    )
    assert signed_in.status_code == 200, signed_in.text
    answer = await client.post(
        str(page.form["data-action"]),
        json={"token": fragment.removeprefix("token=")},
        headers={"Authorization": f"Bearer {signed_in.json()['access_token']}"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == organization["id"]


async def verify_directly(app: FastAPI, user_id: str) -> None:
    async with app.state.sessionmaker.begin() as session:
        user = await session.get_one(User, uuid.UUID(user_id))
        user.is_verified = True


async def test_the_pages_are_served_but_not_in_the_api_document(
    app: FastAPI, client: AsyncClient
) -> None:
    # So the route-authorization test, which walks that document, need not list them.
    for path in PAGES:
        assert (await client.get(path)).status_code == 200
        assert path not in app.openapi()["paths"]


async def test_a_page_opened_without_a_token_says_so_and_the_api_refuses_a_forged_one(
    client: AsyncClient,
) -> None:
    page = await open_page(client, "/dev/verify-email")
    assert "This link has no token" in page.scripts[0]
    for token in ["", "x" * 257, "<script>alert(1)</script>", "\u202etoken"]:
        answer = await client.post(str(page.form["data-action"]), json={"token": token})
        assert 400 <= answer.status_code < 500, (token, answer.text)


@pytest.mark.parametrize(
    "overrides",
    [
        {"ENVIRONMENT": Environment.PRODUCTION, "FRONTEND_URL": "https://app.company.org"},
        {"ENVIRONMENT": Environment.DEVELOPMENT, "FRONTEND_URL": "http://localhost:5173"},
    ],
)
async def test_with_a_web_app_the_links_go_there_and_the_pages_do_not_exist(
    settings: Settings, overrides: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app")
    async with running_app(settings, **overrides) as (_app, client):
        for path in PAGES:
            assert (await client.get(path)).status_code == 404
        # An address of its own: the outbox outlives the app.
        await register(client, f"ada.{overrides['ENVIRONMENT']}@example.com")
    (message,) = messages_to(settings, f"ada.{overrides['ENVIRONMENT']}@example.com")
    assert f"{overrides['FRONTEND_URL']}/verify-email#token=" in text_body(message)
    shown = [record.getMessage() for record in caplog.records if ": open " in record.getMessage()]
    if overrides["ENVIRONMENT"] is Environment.PRODUCTION:
        # Production logs no one-time link, whichever backend sends the mail.
        assert shown == []
    else:
        assert len(shown) == 1


@pytest.mark.parametrize(
    ("host", "port", "base"),
    [
        ("127.0.0.1", 8000, "http://127.0.0.1:8000/dev"),
        ("0.0.0.0", 8001, "http://localhost:8001/dev"),  # noqa: S104 - a setting's value
        ("::", 8000, "http://localhost:8000/dev"),
        ("::1", 8000, "http://[::1]:8000/dev"),
        ("localhost", 9000, "http://localhost:9000/dev"),
    ],
)
def test_the_pages_are_linked_where_this_machine_reaches_the_api(
    settings: Settings, host: str, port: int, base: str
) -> None:
    assert link_base(settings.model_copy(update={"HOST": host, "PORT": port})) == base


def test_the_console_logs_every_link_of_a_message_on_a_line_of_its_own(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app")
    # Longer than a quoted-printable line, so the .eml file breaks it where the log must not.
    link = "http://127.0.0.1:8000/dev/verify-email#token=" + "A-b_=" * 30
    email = Email(
        to="ada@example.com",
        template="verify_email",
        subject="Confirm your email address",
        context={"link": link, "valid_hours": 24},
    )
    message = build_message(email, settings)
    ConsoleBackend(settings).send(message)
    assert console_link(caplog, "Confirm your email address", "ada@example.com") == link
    assert link.encode() not in message.as_bytes()
    production = settings.model_copy(update={"ENVIRONMENT": Environment.PRODUCTION})
    caplog.clear()
    ConsoleBackend(production).send(message)
    (written,) = [record.getMessage() for record in caplog.records]
    assert written.startswith("Email 'Confirm your email address' to ada@example.com written to ")
