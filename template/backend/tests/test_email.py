"""Email: messages built safely, and sent over SMTP with and without STARTTLS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller

from app.core.config import Settings, SmtpSecurity
from app.services.email_service import (
    ConsoleBackend,
    Email,
    SmtpBackend,
    build_message,
    get_backend,
    send_email,
)
from tests.servers import Mailbox, free_port

WELCOME = Email(
    to="ada@example.com",
    template="verify_email",
    subject="Confirm your email address",
    context={"link": "http://localhost:3000/verify-email#token=abc", "valid_hours": 24},
)


def test_a_message_has_text_and_html_and_the_sender(settings: Settings) -> None:
    message = build_message(WELCOME, settings)
    assert message["From"] == settings.EMAIL_FROM
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert "#token=abc" in text.get_content()
    assert 'href="http://localhost:3000/verify-email#token=abc"' in html.get_content()


@pytest.mark.parametrize(
    "change",
    [{"to": "ada@example.com\r\nBcc: everyone@example.com"}, {"subject": "Hi\r\nBcc: x@y.z"}],
)
def test_header_injection_is_refused(settings: Settings, change: dict[str, str]) -> None:
    email = Email(**{**vars(WELCOME), **change})
    with pytest.raises(ValueError, match="linefeed or carriage return"):
        build_message(email, settings)


def test_html_bodies_escape_what_they_are_given(settings: Settings) -> None:
    email = Email(**{**vars(WELCOME), "context": {**WELCOME.context, "link": "<script>x</script>"}})
    html = build_message(email, settings).get_body(preferencelist=("html",))
    assert html is not None
    assert "<script>" not in html.get_content()


def test_the_backend_follows_smtp_host(settings: Settings) -> None:
    assert isinstance(get_backend(settings), ConsoleBackend)
    configured = settings.model_copy(update={"SMTP_HOST": "mail.example.com"})
    assert isinstance(get_backend(configured), SmtpBackend)


def test_plain_smtp_delivers(
    settings: Settings, smtp_settings: dict[str, Any], mailbox: Mailbox
) -> None:
    send_email(WELCOME, settings.model_copy(update=smtp_settings))
    (message,) = mailbox.to("ada@example.com")
    assert message["Subject"] == "Confirm your email address"


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(certificate_authority: trustme.CA) -> Iterator[tuple[int, Mailbox]]:
    """An SMTP server that insists on STARTTLS, with a certificate for 127.0.0.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(context)
    box = Mailbox()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=context,
        require_starttls=True,
    )
    controller.start()
    yield controller.port, box
    controller.stop()


def starttls_settings(settings: Settings, port: int) -> Settings:
    return settings.model_copy(
        update={
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": port,
            "SMTP_SECURITY": SmtpSecurity.STARTTLS,
            "SMTP_TIMEOUT_SECONDS": 5.0,
        }
    )


def test_starttls_delivers_to_a_trusted_server(
    settings: Settings,
    tls_server: tuple[int, Mailbox],
    certificate_authority: trustme.CA,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    port, box = tls_server
    bundle = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    send_email(WELCOME, starttls_settings(settings, port))
    assert [message["To"] for message in box.messages] == ["ada@example.com"]


def test_starttls_refuses_a_certificate_it_cannot_verify(
    settings: Settings, tls_server: tuple[int, Mailbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, box = tls_server
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(ssl.SSLCertVerificationError):
        send_email(WELCOME, starttls_settings(settings, port))
    assert box.messages == []
