"""What scripts/relock.py and scripts/openapi.py share: each renders the template with the
default answers, has the generated project write a file, and ships that file as Jinja
with its answer-dependent lines replaced."""

from __future__ import annotations

import re
from pathlib import Path

from copier import run_copy

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
JINJA_DELIMITERS = re.compile(r"\{[{%#]")


def render_working_tree(destination: Path, answers: dict[str, str]) -> Path:
    """The template's working tree rendered with `answers` into `destination`."""
    run_copy(
        str(TEMPLATE_DIR),
        str(destination),
        data={**answers, "init_git": False},
        defaults=True,
        unsafe=True,
        skip_tasks=True,
        quiet=True,
        # The working tree, uncommitted changes included, rather than the newest tag.
        vcs_ref="HEAD",
    )
    return destination


def refuse_jinja(text: str, what: str) -> None:
    """Stop when `text` could not be shipped as a Jinja template as it is."""
    if JINJA_DELIMITERS.search(text):
        raise SystemExit(f"{what} holds a Jinja delimiter; it cannot be shipped as it is")


def ship(path: Path, template: str) -> None:
    """Write `template` to `path`, and say whether that changed anything."""
    previous = path.read_text(encoding="utf-8") if path.exists() else ""
    path.write_text(template, encoding="utf-8")
    state = "unchanged" if template == previous else "written"
    print(f"{path.relative_to(TEMPLATE_DIR)}: {state}")
