"""Jinja extensions for the dayone questionnaire.

Copier loads these through copier-template-extensions (see ``_jinja_extensions`` in
copier.yml). They keep the naming rules in one readable place instead of long Jinja
expressions inside copier.yml.
"""

from __future__ import annotations

import json
import keyword
import re
import runpy
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

from jinja2 import Environment
from jinja2.ext import Extension

# The generated app's email rule (backend/app/core/emails.py, email-validator without a
# DNS lookup, special-use domains allowed as in development) restated without
# email-validator, which is not installed when the questionnaire runs; a test holds the
# two to the same answers. RFC 5322 atext, and any character from U+0080 on.
EMAIL_ATOM = r"[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~\u0080-\U0010FFFF]+"
EMAIL_LOCAL_RE = re.compile(rf"{EMAIL_ATOM}(\.{EMAIL_ATOM})*")
EMAIL_HOST_CHARS = re.compile(r"[a-z0-9\-.\u0080-\U0010FFFF]*")
EMAIL_ASCII_LABEL = r"[a-z0-9]([a-z0-9\-]*[a-z0-9])?"
EMAIL_ASCII_HOST_RE = re.compile(rf"{EMAIL_ASCII_LABEL}(\.{EMAIL_ASCII_LABEL})*")
# The label separators IDNA knows besides the full stop, which NFKC leaves alone.
EMAIL_LABEL_DOTS = str.maketrans({"\u3002": ".", "\uff61": "."})
EMAIL_MAX_BYTES, EMAIL_DOMAIN_MAX, EMAIL_LABEL_MAX = 254, 253, 63
# Longer answers are cut in messages: no address has more characters.
SHOWN_LENGTH = 254
# A Python identifier that is also a valid distribution name (PEP 508 wants a letter or
# digit at both ends).
SLUG_RE = re.compile(r"^[a-z](?:[a-z0-9_]*[a-z0-9])?$")
# Names the generated project imports itself; a package of the same name would shadow them.
RESERVED_SLUGS = frozenset({"app", "alembic", "tests", "tools", "test"})


def slugify(value: str) -> str:
    """Turn a free-form project name into a lowercase Python identifier."""
    slug = re.sub(r"[^a-z0-9]+", "_", value.strip().lower()).strip("_")
    if slug and slug[0].isdigit():
        slug = f"app_{slug}"
    return slug


def text_error(value: str, what: str) -> str:
    """Say what is wrong with free text the template writes into code and manifests
    (Python and TOML strings, the API document), or return an empty string."""
    if not value.strip():
        return f"{what} cannot be empty."
    if '"' in value or "\\" in value or any(unicodedata.category(char) == "Cc" for char in value):
        return (
            f"{what} cannot hold a double quote, a backslash or a control character: "
            "it is written into Python and TOML strings as it is."
        )
    return ""


def json_string(value: str) -> str:
    """`value` as a JSON string, written as `json.dumps(..., ensure_ascii=False)` writes it
    (Jinja's own tojson escapes more, for HTML)."""
    return json.dumps(value, ensure_ascii=False)


def distribution_name(slug: str) -> str:
    """The slug as package tools spell the project's name (PEP 503), as in uv.lock."""
    return re.sub(r"_+", "-", slug)


def slug_error(value: str) -> str:
    """Say what is wrong with a project slug, or return an empty string."""
    if not SLUG_RE.match(value):
        return (
            f"'{value}' is not a valid project slug: use lowercase letters, digits and "
            "underscores, starting with a letter and ending with a letter or digit (for "
            "example: my_app)."
        )
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        return f"'{value}' is a Python keyword; pick another slug (for example: {value}_api)."
    if value in sys.stdlib_module_names:
        return (
            f"'{value}' is the name of a Python standard-library module and would shadow "
            f"it; pick another slug (for example: {value}_api)."
        )
    if value in RESERVED_SLUGS:
        return (
            f"'{value}' is a package name the generated project uses itself; pick another "
            f"slug (for example: {value}_api)."
        )
    return ""


def _unsafe(text: str) -> bool:
    # Controls, format characters, separators and spaces, and a combining mark that
    # would join whatever stands before the address.
    return any(
        unicodedata.category(char)[0] in "CZ"
        or (index == 0 and unicodedata.category(char)[0] == "M")
        for index, char in enumerate(text)
    )


def _email_local_ok(local: str) -> bool:
    return all(
        EMAIL_LOCAL_RE.fullmatch(form) and not _unsafe(form)
        for form in (local, unicodedata.normalize("NFC", local))
    )


def _email_domain(domain: str) -> tuple[str, str] | None:
    """The domain as written after IDNA mapping and in ASCII, or None when it is not one."""
    # A character that stands for something with a full stop in it (such as "⒈") would
    # move the label boundaries: IDNA refuses it.
    if (
        len(domain) > EMAIL_DOMAIN_MAX
        or _unsafe(domain)
        or any("002E" in unicodedata.decomposition(char).split() for char in domain)
    ):
        return None
    unicode = unicodedata.normalize("NFKC", domain).lower().translate(EMAIL_LABEL_DOTS)
    labels = unicode.split(".")
    if not EMAIL_HOST_CHARS.fullmatch(unicode) or "" in labels:
        return None
    ascii_labels = []
    for label in labels:
        if label.startswith("-") or label.endswith("-") or re.match(r"(?!xn)..--", label):
            return None
        non_ascii = [char for char in label if ord(char) > 127]
        if label.startswith("xn--"):
            try:
                non_ascii = list(label.encode("ascii").decode("idna"))
            except UnicodeError:
                return None
        # IDNA 2008 takes letters, marks and digits; symbols such as emoji are refused.
        if any(unicodedata.category(char)[0] not in "LMN" for char in non_ascii if ord(char) > 127):
            return None
        try:
            ascii_labels.append(label.encode("idna").decode("ascii") if non_ascii else label)
        except UnicodeError:
            return None
    ascii_domain = ".".join(ascii_labels)
    if (
        not EMAIL_ASCII_HOST_RE.fullmatch(ascii_domain)
        or len(ascii_domain) > EMAIL_DOMAIN_MAX
        or any(len(label) > EMAIL_LABEL_MAX for label in ascii_labels)
        or "." not in ascii_domain
        or not ascii_domain[-1].isalpha()
    ):
        return None
    return unicode, ascii_domain


def email_error(value: str) -> str:
    """Say what is wrong with an email address, or return an empty string.

    Accepts what the generated app accepts outside production, in the same words when
    it refuses; the app itself then refuses special-use domains in production.
    """
    value = value or ""
    local, at, domain = value.partition("@")
    found = _email_domain(domain) if at and local and _email_local_ok(local) else None
    if found is not None:
        nfc = unicodedata.normalize("NFC", local)
        forms = (value, f"{nfc}@{found[0]}", f"{nfc}@{found[1]}")
        if all(len(form.encode()) <= EMAIL_MAX_BYTES for form in forms):
            return ""
    shown = f"{value[:SHOWN_LENGTH]!r}..." if len(value) > SHOWN_LENGTH else repr(value)
    return f"{shown} is not a valid email address; expected something like jane@example.com."


def git_config(key: str) -> str:
    """Read a value from the user's git configuration, or an empty string."""
    try:
        result = subprocess.run(
            ["git", "config", "--get", key],
            capture_output=True,
            text=True,
            check=False,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip()


# The generated project's deployers write fly.toml and render.yaml; the template renders
# the same files by calling them, so the two can never drift apart.
TEMPLATE_ROOT = Path(__file__).resolve().parents[1]
DEPLOYERS_DIR = TEMPLATE_ROOT / "template" / "tools" / "deployers"
# The one loader for the template's own code, shared with hooks/post_copy.py: it imports
# the deployers without leaving a __pycache__ in template/. Copier loads this file by its
# path, once per template version during `copier update`, and extensions/ is not on
# sys.path: running the loader's file from this checkout gives this version's loader,
# where an import would return whichever version's module came first.
import_path = runpy.run_path(str(TEMPLATE_ROOT / "hooks" / "bytecode_free.py"))["import_path"]


def deploy_manifest(target: str, **answers: str) -> str:
    """The manifest the deployer for `target` writes, for the questionnaire's answers."""
    deployers = import_path(DEPLOYERS_DIR)
    if target == "fly":
        app = deployers.base.app_name(answers["slug"])
        return str(deployers.fly.fly_manifest(answers["project_name"], app, answers["region"]))
    if target == "render":
        return str(
            deployers.render.render_manifest(
                answers["project_name"], answers["slug"], answers["region"]
            )
        )
    raise ValueError(f"no manifest for the deploy target {target!r}")


# Copier words a refused answer this way; given with `-d`, the error reaches the top of
# the process as a ValueError, which Python would print with a long traceback in front of
# the one sentence that matters.
REFUSED_ANSWER = "Validation error for question"


def answer_errors_as_sentences(previous: Any) -> Any:
    """An excepthook that prints a refused answer as its sentence alone."""

    def hook(kind: type[BaseException], error: BaseException, traceback: Any) -> None:
        if issubclass(kind, ValueError) and str(error).startswith(REFUSED_ANSWER):
            print(error, file=sys.stderr)
            return
        previous(kind, error, traceback)

    hook.dayone = True  # type: ignore[attr-defined]
    return hook


class DayoneExtension(Extension):
    """Filters for slugs and validation messages, globals for git identity defaults."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        # Interactively, Copier shows the sentence and asks again; non-interactively the
        # sentence is all that is printed (the process still exits with status 1).
        if not getattr(sys.excepthook, "dayone", False):
            sys.excepthook = answer_errors_as_sentences(sys.excepthook)
        environment.filters["slugify"] = slugify
        environment.filters["slug_error"] = slug_error
        environment.filters["distribution_name"] = distribution_name
        environment.filters["json_string"] = json_string
        environment.filters["text_error"] = text_error
        environment.filters["email_error"] = email_error
        globals_: dict[str, Any] = environment.globals
        globals_["git_user_name"] = git_config("user.name")
        globals_["git_user_email"] = git_config("user.email")
        globals_["deploy_manifest"] = deploy_manifest
