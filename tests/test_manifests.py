"""The deploy manifests: rendered only for their target, valid against the platforms'
published schemas, and holding the values a deploy depends on.

The schemas are not part of this repository: they are read from ../shared/reference beside
the clone (`conftest.SHARED_REFERENCE`). In CI (the CI environment variable set) a missing
schema fails the run; elsewhere the schema tests skip and say where the file was expected.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from template_tools import SHARED_REFERENCE

FLY_SCHEMA = "fly.schema.json"
RENDER_SCHEMA = "render.yaml.schema.json"
MANIFESTS = {"fly": "fly.toml", "render": "render.yaml"}

FLY_ANSWERS = {"project_name": "Acme Billing", "deploy_target": "fly", "fly_region": "ams"}
RENDER_ANSWERS = {
    "project_name": "Acme Billing",
    "deploy_target": "render",
    "render_region": "frankfurt",
}

# Fly app names become <app>.fly.dev, so they must be valid DNS labels.
FLY_APP_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Settings whose values are credentials: a manifest may reference them, never hold them.
SECRET_SETTINGS = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL")
MIGRATE = "alembic upgrade head"

Render = Callable[..., Path]


def reference_schema(name: str, reference_dir: Path = SHARED_REFERENCE) -> Path:
    """The path of a published schema; fails in CI and skips elsewhere when it is missing."""
    schema = reference_dir / name
    if schema.is_file():
        return schema
    reason = (
        f"{schema} is missing; the manifest schemas are read from ../shared/reference "
        "beside the template clone"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{reason}, which CI must provide.", pytrace=False)
    pytest.skip(reason)


def validate(schema: Path, document: Path) -> subprocess.CompletedProcess[str]:
    """Validate a TOML, YAML or JSON file with check-jsonschema, listing every error."""
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.fail("check-jsonschema is not installed: pip install 'check-jsonschema>=0.29'")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--verbose",
            "--schemafile",
            str(schema),
            str(document),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def assert_valid(schema: Path, document: Path) -> None:
    result = validate(schema, document)
    assert result.returncode == 0, f"{document.name} fails {schema.name}:\n{result.stdout}"


def load_fly(project: Path) -> dict[str, Any]:
    return tomllib.loads((project / "fly.toml").read_text(encoding="utf-8"))


def load_render(project: Path) -> dict[str, Any]:
    data = yaml.safe_load((project / "render.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def render_env(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        variable["key"]: variable for variable in service.get("envVars", []) if "key" in variable
    }


def web_service(blueprint: dict[str, Any]) -> dict[str, Any]:
    (web,) = [service for service in blueprint["services"] if service["type"] == "web"]
    return web


def keyvalue_instance(blueprint: dict[str, Any]) -> dict[str, Any]:
    (keyvalue,) = [service for service in blueprint["services"] if service["type"] == "keyvalue"]
    return keyvalue


@pytest.fixture(scope="module")
def fly_project(render: Render) -> Path:
    return render(**FLY_ANSWERS)


@pytest.fixture(scope="module")
def render_project(render: Render) -> Path:
    return render(**RENDER_ANSWERS)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ({"deploy_target": "local"}, set()),
        ({"deploy_target": "tunnel"}, set()),
        (FLY_ANSWERS, {"fly.toml"}),
        (RENDER_ANSWERS, {"render.yaml"}),
    ],
    ids=["local", "tunnel", "fly", "render"],
)
def test_only_the_chosen_target_gets_a_manifest(
    render: Render, answers: dict[str, str], expected: set[str]
) -> None:
    project = render(**answers)
    present = {name for name in MANIFESTS.values() if (project / name).exists()}
    assert present == expected
    for name in present:
        text = (project / name).read_text(encoding="utf-8")
        assert "{{" not in text and "{%" not in text, f"unrendered Jinja left in {name}"


def test_fly_manifest_matches_published_schema(fly_project: Path) -> None:
    assert_valid(reference_schema(FLY_SCHEMA), fly_project / "fly.toml")


def test_render_manifest_matches_published_schema(render_project: Path) -> None:
    assert_valid(reference_schema(RENDER_SCHEMA), render_project / "render.yaml")


def _rename_release_command(fly: dict[str, Any]) -> None:
    fly["deploy"]["release_comand"] = fly["deploy"].pop("release_command")


def _unknown_auto_stop(fly: dict[str, Any]) -> None:
    fly["http_service"]["auto_stop_machines"] = "sometimes"


def _unknown_vm_size(fly: dict[str, Any]) -> None:
    fly["vm"][0]["size"] = "shared-cpu-3x"


@pytest.mark.parametrize(
    ("breakage", "reported"),
    [
        (_rename_release_command, "'release_comand' was unexpected"),
        (_unknown_auto_stop, "'sometimes' is not one of"),
        (_unknown_vm_size, "'shared-cpu-3x' is not one of"),
    ],
    ids=["typo-in-deploy", "auto-stop-value", "vm-size"],
)
def test_fly_schema_rejects_a_broken_manifest(
    fly_project: Path,
    tmp_path: Path,
    breakage: Callable[[dict[str, Any]], None],
    reported: str,
) -> None:
    schema = reference_schema(FLY_SCHEMA)
    broken = copy.deepcopy(load_fly(fly_project))
    breakage(broken)
    document = tmp_path / "fly.json"
    document.write_text(json.dumps(broken), encoding="utf-8")
    result = validate(schema, document)
    assert result.returncode == 1, result.stdout + result.stderr
    assert reported in result.stdout


def _keyvalue_open_to_everyone(blueprint: dict[str, Any]) -> None:
    del keyvalue_instance(blueprint)["ipAllowList"]


def _unknown_region(blueprint: dict[str, Any]) -> None:
    web_service(blueprint)["region"] = "mars"


def _unknown_database_property(blueprint: dict[str, Any]) -> None:
    render_env(web_service(blueprint))["DATABASE_URL"]["fromDatabase"]["property"] = "url"


@pytest.mark.parametrize(
    ("breakage", "reported"),
    [
        (_keyvalue_open_to_everyone, "'ipAllowList' is a required property"),
        (_unknown_region, "'mars' is not one of"),
        (_unknown_database_property, "'url' is not one of"),
    ],
    ids=["keyvalue-without-allow-list", "region", "database-property"],
)
def test_render_schema_rejects_a_broken_manifest(
    render_project: Path,
    tmp_path: Path,
    breakage: Callable[[dict[str, Any]], None],
    reported: str,
) -> None:
    schema = reference_schema(RENDER_SCHEMA)
    broken = copy.deepcopy(load_render(render_project))
    breakage(broken)
    document = tmp_path / "render.json"
    document.write_text(json.dumps(broken), encoding="utf-8")
    result = validate(schema, document)
    assert result.returncode == 1, result.stdout + result.stderr
    assert reported in result.stdout


def test_fly_manifest_values(fly_project: Path) -> None:
    fly = load_fly(fly_project)

    assert fly["app"] == "acme-billing"
    assert FLY_APP_NAME.match(fly["app"])
    assert fly["primary_region"] == "ams"
    assert (fly_project / fly["build"]["dockerfile"]).is_file()

    env = fly["env"]
    assert env["ENVIRONMENT"] == "production"
    assert env["HOST"] == "0.0.0.0"
    assert MIGRATE in fly["deploy"]["release_command"]

    service = fly["http_service"]
    assert service["internal_port"] == int(env["PORT"]) == 8000
    assert service["force_https"] is True
    assert service["auto_stop_machines"] in {"stop", "suspend"}
    assert service["auto_start_machines"] is True
    assert service["min_machines_running"] >= 1
    assert [(check["method"], check["path"]) for check in service["checks"]] == [("GET", "/health")]
    # Metrics on a port of their own, which Fly scrapes and its proxy does not route.
    assert fly["metrics"] == {"port": int(env["METRICS_PORT"]), "path": "/metrics", "processes": ["web"]}
    assert fly["metrics"]["port"] != service["internal_port"]

    processes = fly["processes"]
    assert processes["web"] == "python -m app"
    assert processes["worker"] == "python -m app.worker"
    assert set(service["processes"]) <= processes.keys()
    sized = {group for vm in fly["vm"] for group in vm["processes"]}
    assert sized == processes.keys(), "every process group needs its [[vm]] sizing"


def test_render_manifest_values(render_project: Path) -> None:
    blueprint = load_render(render_project)
    web = web_service(blueprint)
    keyvalue = keyvalue_instance(blueprint)
    (database,) = blueprint["databases"]

    assert {web["region"], keyvalue["region"], database["region"]} == {"frankfurt"}
    assert web["runtime"] == "docker"
    assert (render_project / web["dockerfilePath"]).is_file()
    assert web["healthCheckPath"] == "/health"
    assert MIGRATE in web["preDeployCommand"]
    assert web["plan"] != "free", "free instances cannot run a pre-deploy command"

    assert keyvalue["maxmemoryPolicy"] == "noeviction"
    assert keyvalue["ipAllowList"] == []

    env = render_env(web)
    assert env["ENVIRONMENT"]["value"] == "production"
    assert env["DATABASE_URL"]["fromDatabase"] == {
        "name": database["name"],
        "property": "connectionString",
    }
    assert env["REDIS_URL"]["fromService"] == {
        "type": "keyvalue",
        "name": keyvalue["name"],
        "property": "connectionString",
    }

    # The worker: same image and region, the same database and queue, the web service's key.
    (worker,) = [service for service in blueprint["services"] if service["type"] == "worker"]
    assert worker["dockerCommand"] == "python -m app.worker"
    assert (worker["runtime"], worker["region"]) == ("docker", "frankfurt")
    worker_env = render_env(worker)
    for name in ("ENVIRONMENT", "DATABASE_URL", "REDIS_URL"):
        assert worker_env[name] == env[name], name
    assert worker_env["SECRET_KEY"]["fromService"] == {
        "type": "web",
        "name": web["name"],
        "envVarKey": "SECRET_KEY",
    }

    # Storage and mail: one group both services read, every value asked for at setup.
    (group,) = blueprint["envVarGroups"]
    for service in (web, worker):
        assert {"fromGroup": group["name"]} in service["envVars"], service["name"]
    asked = {variable["key"]: variable for variable in group["envVars"]}
    assert {"S3_BUCKET", "S3_SECRET_ACCESS_KEY", "SMTP_HOST", "SMTP_PASSWORD"} <= asked.keys()
    assert all(variable == {"key": key, "sync": False} for key, variable in asked.items())


def test_secret_key_is_never_a_literal(fly_project: Path, render_project: Path) -> None:
    fly_env = load_fly(fly_project)["env"]
    assert not set(SECRET_SETTINGS) & fly_env.keys()
    assert not re.search(
        r"^\s*SECRET_KEY\s*=", (fly_project / "fly.toml").read_text(), re.MULTILINE
    )

    env = render_env(web_service(load_render(render_project)))
    assert env["SECRET_KEY"] == {"key": "SECRET_KEY", "generateValue": True}
    for name in SECRET_SETTINGS:
        assert "value" not in env[name] and "previewValue" not in env[name], name


def deployer_output(project: Path, expression: str) -> str:
    """Evaluate `expression` with the generated project's tools/ importable."""
    code = (
        "import sys\n"
        "from tools import project\n"
        "from tools.deployers.base import app_name\n"
        "from tools.deployers.fly import fly_manifest\n"
        "from tools.deployers.render import render_manifest\n"
        f"sys.stdout.write({expression})\n"
    )
    result = subprocess.run(
        # -B: no __pycache__ in the shared render, which other tests list file by file.
        [sys.executable, "-B", "-c", code],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_rendered_manifests_are_what_the_deployers_write(
    fly_project: Path, render_project: Path
) -> None:
    """One source: Copier renders the manifests by calling the project's own deployers, so
    `day_one` later finds them unedited and can refresh them."""
    fly = deployer_output(
        fly_project,
        "fly_manifest(project.PROJECT_NAME, app_name(project.PROJECT_SLUG), project.FLY_REGION)",
    )
    assert fly == (fly_project / "fly.toml").read_text()
    render_yaml = deployer_output(
        render_project,
        "render_manifest(project.PROJECT_NAME, project.PROJECT_SLUG, project.RENDER_REGION)",
    )
    assert render_yaml == (render_project / "render.yaml").read_text()


def test_fly_app_name_from_an_awkward_slug(render: Render) -> None:
    project = render(deploy_target="fly", project_slug="acme__billing")
    assert load_fly(project)["app"] == "acme-billing"


def test_missing_schema_fails_in_ci_and_skips_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must provide"):
        reference_schema(FLY_SCHEMA, tmp_path)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="shared/reference"):
        reference_schema(FLY_SCHEMA, tmp_path)
