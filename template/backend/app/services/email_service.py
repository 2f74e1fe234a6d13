"""Outgoing email.

Messages are built with `email.message.EmailMessage` under the default policy, which
refuses CR/LF in headers, so a user-supplied value cannot inject headers. Bodies come
from the Jinja templates in app/templates/email/ (`<name>.txt` and `<name>.html`).

Nothing sends mail in a request: services enqueue the job that `send_email_job` builds,
which the worker runs, or the API after the response without Redis. With SMTP_HOST set
the email goes out through SMTP; otherwise the console backend, the embedded default,
logs that a message was sent and writes it to EMAIL_OUTBOX_DIR. Log lines carry no body,
since bodies hold one-time links; only the console backend outside production logs the
links, one a line and decoded (the .eml file is quoted-printable), because there the log
is where a developer opens them.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as default_policy
from functools import cache
from typing import Any, Protocol

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from app.core.config import Settings, SmtpSecurity
from app.core.job_runtime import job_runtime
from app.core.queue import EMAIL_QUEUE, JobCall, done_before, mark_done

logger = logging.getLogger(__name__)
# Spans only once app/core/tracing.py has started tracing; until then, nothing.
tracer = trace.get_tracer(__name__)
# Links in the plain-text bodies, which put each on a line of its own.
LINK = re.compile(r"https?://\S+")


@dataclass(frozen=True)
class Email:
    to: str
    template: str
    subject: str
    context: dict[str, Any]


class EmailBackend(Protocol):
    def send(self, message: EmailMessage) -> None: ...


@cache
def _templates() -> Environment:
    return Environment(
        loader=PackageLoader("app", "templates/email"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
    )


def warm_up() -> None:
    """Compile the templates now, so that processes forked later find them ready."""
    environment = _templates()
    for name in environment.list_templates():
        environment.get_template(name)


def build_message(email: Email, settings: Settings) -> EmailMessage:
    context = {"app_name": settings.PROJECT_NAME, **email.context}
    message = EmailMessage(policy=default_policy)
    message["From"] = settings.EMAIL_FROM
    message["To"] = email.to
    message["Subject"] = email.subject
    message.set_content(_templates().get_template(f"{email.template}.txt").render(context))
    html = _templates().get_template(f"{email.template}.html").render(context)
    message.add_alternative(html, subtype="html")
    return message


def links(message: EmailMessage) -> list[str]:
    """The links in a message's plain-text body, decoded."""
    body = message.get_body(("plain",))
    return LINK.findall(body.get_content()) if body is not None else []


class ConsoleBackend:
    def __init__(self, settings: Settings) -> None:
        self.outbox = settings.EMAIL_OUTBOX_DIR
        self.show_links = not settings.is_production

    def send(self, message: EmailMessage) -> None:
        self.outbox.mkdir(parents=True, exist_ok=True)
        path = self.outbox / f"{uuid.uuid4().hex}.eml"
        path.write_bytes(message.as_bytes())
        logger.info("Email %r to %s written to %s", message["Subject"], message["To"], path)
        for link in links(message) if self.show_links else []:
            logger.info("Email %r to %s: open %s", message["Subject"], message["To"], link)


class SmtpBackend:
    def __init__(self, host: str, settings: Settings) -> None:
        self.host = host
        self.port = settings.smtp_port
        self.security = settings.SMTP_SECURITY
        self.user = settings.SMTP_USER
        self.password = settings.SMTP_PASSWORD
        self.timeout = settings.SMTP_TIMEOUT_SECONDS

    def send(self, message: EmailMessage) -> None:
        attributes: dict[str, str | int] = {"server.address": self.host, "server.port": self.port}
        with tracer.start_as_current_span("smtp send", kind=SpanKind.CLIENT, attributes=attributes):
            self._send(message)
        logger.info("Email %r to %s sent through %s", message["Subject"], message["To"], self.host)

    def _send(self, message: EmailMessage) -> None:
        # Certificates are verified against the system's trust store (or SSL_CERT_FILE).
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.security is SmtpSecurity.SSL:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.security is SmtpSecurity.STARTTLS:
                smtp.starttls(context=context)
            if self.user and self.password:
                smtp.login(self.user, self.password.get_secret_value())
            smtp.send_message(message)


def get_backend(settings: Settings) -> EmailBackend:
    if settings.SMTP_HOST:
        return SmtpBackend(settings.SMTP_HOST, settings)
    return ConsoleBackend(settings)


def send_email(email: Email, settings: Settings) -> None:
    get_backend(settings).send(build_message(email, settings))


def deliver_email(to: str, template: str, subject: str, context: dict[str, Any]) -> None:
    """The job: send one email (its arguments are plain values, as RQ stores them), once
    even when the job runs again."""
    if done_before():
        logger.info("Email %r to %s was sent by an earlier run of its job", subject, to)
        return
    settings = job_runtime().settings
    send_email(Email(to=to, template=template, subject=subject, context=context), settings)
    mark_done()


def send_email_job(email: Email) -> JobCall:
    return JobCall(
        deliver_email,
        (email.to, email.template, email.subject, email.context),
        description=f"send_email {email.template} to {email.to}",
        queue=EMAIL_QUEUE,
    )
