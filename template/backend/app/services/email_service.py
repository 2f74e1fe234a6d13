"""Outgoing email.

Messages are built with `email.message.EmailMessage` under the default policy, which
refuses CR/LF in headers, so a user-supplied value cannot inject headers. Bodies come
from the Jinja templates in app/templates/email/ (`<name>.txt` and `<name>.html`).

The console backend, the embedded default, logs that a message was sent and writes it
to EMAIL_OUTBOX_DIR; the log line carries no body, since bodies hold one-time links.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as default_policy
from functools import cache
from typing import Any, Protocol

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from app.core.config import Settings

logger = logging.getLogger(__name__)


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


class ConsoleBackend:
    def __init__(self, settings: Settings) -> None:
        self.outbox = settings.EMAIL_OUTBOX_DIR

    def send(self, message: EmailMessage) -> None:
        self.outbox.mkdir(parents=True, exist_ok=True)
        path = self.outbox / f"{uuid.uuid4().hex}.eml"
        path.write_bytes(message.as_bytes())
        logger.info("Email %r to %s written to %s", message["Subject"], message["To"], path)


def get_backend(settings: Settings) -> EmailBackend:
    return ConsoleBackend(settings)


def send_email(email: Email, settings: Settings) -> None:
    get_backend(settings).send(build_message(email, settings))
