"""Render curated answer combinations and check what each one promises."""

from __future__ import annotations

import filecmp
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from template_tools import RENDERED_FILES, TEMPLATE_DIR, Answers

QUESTIONS = [
    name
    for name in yaml.safe_load((TEMPLATE_DIR / "copier.yml").read_text())
    if not name.startswith("_")
]

# A hand-picked list, like cookiecutter-django's: each deploy target and Python version
# at least once, and names that exercise the slug derivation.
COMBINATIONS: dict[str, Answers] = {
    "defaults": {},
    "tunnel": {"deploy_target": "tunnel", "project_name": "Acme Billing"},
    "fly": {"deploy_target": "fly", "fly_region": "ams"},
    "render": {"deploy_target": "render", "render_region": "frankfurt"},
    "py312": {"python_version": "3.12", "project_name": "Orbit 2 API", "project_slug": "orbit"},
    "py313": {
        "python_version": "3.13",
        "description": "Ledger service.",
        "owner_email": "boss@example.org",
    },
}

# Files that only some answers produce, and the condition under which they must exist.
OPTIONAL_FILES: dict[str, Callable[[Answers], bool]] = {
    "fly.toml": lambda answers: answers.get("deploy_target") == "fly",
    "render.yaml": lambda answers: answers.get("deploy_target") == "render",
}

LEFTOVER = re.compile(r"(?<!\$)\{\{[^}]*\}\}|\{%-?[^%]*%\}")


def project_files(project: Path) -> list[Path]:
    # Other tests run the rendered projects' tools, which leave caches and virtual
    # environments behind; only what Copier wrote counts here.
    rendered = RENDERED_FILES.get(project)
    if rendered is not None:
        return rendered
    return sorted(
        path for path in project.rglob("*") if path.is_file() and ".git" not in path.parts
    )


@pytest.fixture(params=sorted(COMBINATIONS))
def combination(request: pytest.FixtureRequest) -> tuple[Answers, Path]:
    answers = COMBINATIONS[request.param]
    return answers, request.getfixturevalue("render")(**answers)


def test_no_copier_expression_or_jinja_file_is_left(combination: tuple[Answers, Path]) -> None:
    _, project = combination
    problems = []
    for path in project_files(project):
        relative = path.relative_to(project)
        if path.suffix == ".jinja" or "{{" in str(relative) or "{%" in str(relative):
            problems.append(f"{relative}: unrendered file name")
            continue
        text = path.read_text(encoding="utf-8")
        for match in LEFTOVER.finditer(text):
            expression = match.group(0)
            if (
                any(re.search(rf"\b{question}\b", expression) for question in QUESTIONS)
                or "_copier" in expression
            ):
                problems.append(f"{relative}: {expression}")
    assert problems == []


def test_optional_files_follow_the_answers(combination: tuple[Answers, Path]) -> None:
    answers, project = combination
    for name, expected in OPTIONAL_FILES.items():
        assert (project / name).exists() is expected(answers), name


def test_answers_reach_the_files(combination: tuple[Answers, Path]) -> None:
    answers, project = combination
    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text())
    for question, value in answers.items():
        assert recorded[question] == value
    python_version = answers.get("python_version", "3.11")
    assert (project / "backend" / ".python-version").read_text().strip() == python_version
    pyproject = (project / "backend" / "pyproject.toml").read_text()
    assert f'name = "{recorded["project_slug"]}"' in pyproject
    assert f'requires-python = ">={python_version}"' in pyproject
    assert f"python_version = {python_version}\n" in (project / "mypy.ini").read_text()


def test_render_is_deterministic(render: Callable[..., Path], tmp_path: Path) -> None:
    from template_tools import copy_template

    answers = COMBINATIONS["fly"]
    first = render(**answers)
    second = tmp_path / "again"
    copy_template(second, answers)
    names = {p.relative_to(first) for p in project_files(first)} - {Path(".env")}
    assert names == {p.relative_to(second) for p in project_files(second)} - {Path(".env")}
    _, mismatch, errors = filecmp.cmpfiles(first, second, sorted(map(str, names)), shallow=False)
    assert (mismatch, errors) == ([], [])


def test_secrets_go_to_env_only(render: Callable[..., Path]) -> None:
    project = render()
    env = dict(
        line.split("=", 1)
        for line in (project / ".env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    secret = env["SECRET_KEY"]
    assert len(secret) >= 43
    assert (project / ".env").stat().st_mode & 0o077 == 0
    for path in project_files(project):
        if path.name != ".env":
            assert secret not in path.read_text(encoding="utf-8"), path
    answers = (project / ".copier-answers.yml").read_text()
    assert "SECRET" not in answers.upper()
    assert ".env" in (project / ".gitignore").read_text().splitlines()
