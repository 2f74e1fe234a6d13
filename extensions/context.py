"""Jinja extensions for the dayone questionnaire.

Copier loads these through copier-template-extensions (see ``_jinja_extensions`` in
copier.yml). They keep the naming rules in one readable place instead of long Jinja
expressions inside copier.yml.
"""

from __future__ import annotations

import hashlib
import importlib.util
import keyword
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from jinja2 import Environment
from jinja2.ext import Extension

# An email address good enough to reject typos; deliverability is the mail server's job.
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
SLUG_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# Names the generated project imports itself; a package of the same name would shadow them.
RESERVED_SLUGS = frozenset({"app", "alembic", "tests", "tools", "test"})


def slugify(value: str) -> str:
    """Turn a free-form project name into a lowercase Python identifier."""
    slug = re.sub(r"[^a-z0-9]+", "_", value.strip().lower()).strip("_")
    if slug and slug[0].isdigit():
        slug = f"app_{slug}"
    return slug


def slug_error(value: str) -> str:
    """Say what is wrong with a project slug, or return an empty string."""
    if not SLUG_RE.match(value):
        return (
            f"'{value}' is not a valid project slug: use lowercase letters, digits and "
            "underscores, starting with a letter (for example: my_app)."
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


def email_error(value: str) -> str:
    """Say what is wrong with an email address, or return an empty string."""
    if EMAIL_RE.match(value or ""):
        return ""
    return f"'{value}' is not an email address; expected something like jane@example.com."


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
DEPLOYERS_DIR = Path(__file__).resolve().parents[1] / "template" / "tools" / "deployers"


def load_deployers(directory: Path = DEPLOYERS_DIR) -> ModuleType:
    """Import the template's tools/deployers package from this template checkout.

    `copier update` renders the old and the new template version in one process, each
    from its own checkout: the package is registered under a name unique to its path so
    that one version's modules never stand in for the other's.
    """
    name = "dayone_deployers_" + hashlib.sha256(str(directory).encode()).hexdigest()[:16]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, directory / "__init__.py", submodule_search_locations=[str(directory)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the deployers from {directory}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # No __pycache__ in the template checkout: Copier would copy it into the project.
    writes_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = writes_bytecode
    return module


def deploy_manifest(target: str, **answers: str) -> str:
    """The manifest the deployer for `target` writes, for the questionnaire's answers."""
    deployers = load_deployers()
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


class DayoneExtension(Extension):
    """Filters for slugs and validation messages, globals for git identity defaults."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["slugify"] = slugify
        environment.filters["slug_error"] = slug_error
        environment.filters["email_error"] = email_error
        globals_: dict[str, Any] = environment.globals
        globals_["git_user_name"] = git_config("user.name")
        globals_["git_user_email"] = git_config("user.email")
        globals_["deploy_manifest"] = deploy_manifest
