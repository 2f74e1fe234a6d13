"""Reading `.env` and creating it from `.env.template` with fresh secrets.

Standard library only: `copier copy` runs this too, before any dependency is installed.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

# Settings in .env.template whose empty value is filled with a fresh random secret.
GENERATED_SECRETS = ("SECRET_KEY",)


def parse_env(text: str) -> dict[str, str]:
    """KEY=value lines, as the app's settings read them: comments and blanks skipped,
    one pair of surrounding quotes removed."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def new_secret_key() -> str:
    """A fresh SECRET_KEY: 48 random bytes, URL-safe base64, well past the 256 bits the
    app's check asks for."""
    return secrets.token_urlsafe(48)


def render_env(template_text: str) -> str:
    """The .env template with each empty secret filled with a new random value."""
    lines = []
    for line in template_text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name in GENERATED_SECRETS and not value:
            line = f"{name}={new_secret_key()}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def create_env(root: Path) -> bool:
    """Write .env from .env.template unless one exists; True when it was written."""
    env_file = root / ".env"
    if env_file.exists():
        return False
    template = (root / ".env.template").read_text(encoding="utf-8")
    # Created private from the start: the file holds the signing key.
    descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(render_env(template))
    return True


def read_settings(root: Path) -> dict[str, str]:
    """.env's values with the process environment on top, the app's own precedence."""
    env_file = root / ".env"
    values = parse_env(env_file.read_text(encoding="utf-8")) if env_file.exists() else {}
    values.update(os.environ)
    return values
