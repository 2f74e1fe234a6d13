"""Refresh the API document the template ships: template/openapi.json.jinja.

Every generated project commits its OpenAPI document, openapi.json, so that a frontend
can build its client from it; the project's CI checks that it matches the code. This
writes it with the project's own command (`python -m app.cli openapi`) for the default
answers, with the two lines that depend on the answers, the title and the description,
turned into Jinja.

    uv run python scripts/openapi.py     # after changing routes, schemas or errors

tests/test_openapi_document.py fails when the shipped document and the code disagree,
and says to run this.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from shipped import TEMPLATE_DIR, refuse_jinja, render_working_tree, ship
from uv import find_uv_bin

DOCUMENT_TEMPLATE = TEMPLATE_DIR / "template" / "openapi.json.jinja"
ANSWERS = {"project_name": "My App", "description": "The My App backend API."}


def as_template(document: str) -> str:
    refuse_jinja(document, "the document")
    for key, answer in (("title", "project_name"), ("description", "description")):
        line = f"    {json.dumps(key)}: {json.dumps(ANSWERS[answer], ensure_ascii=False)},\n"
        if document.count(line) != 1:
            raise SystemExit(f"expected exactly one line {line.strip()!r} in the document")
        jinja = f"    {json.dumps(key)}: {{{{ {answer} | json_string }}}},\n"
        document = document.replace(line, jinja)
    return document


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="dayone-openapi-") as scratch:
        project = render_working_tree(Path(scratch) / "project", ANSWERS)
        output = project / "openapi.json"
        env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
        command = [find_uv_bin(), "run", "--directory", str(project / "backend"), "python"]
        command += ["-m", "app.cli", "openapi", "--output", str(output)]
        result = subprocess.run(command, env=env, check=False)
        if result.returncode != 0:
            return result.returncode
        ship(DOCUMENT_TEMPLATE, as_template(output.read_text(encoding="utf-8")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
