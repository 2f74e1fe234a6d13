"""The deployers: manifests, plans, and running them against fake platform programs."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from app.core.config import Settings
from tests.servers import Mailbox, free_port, settings_env
from tests.support import PASSWORD
from tools.deployers import DEPLOYERS
from tools.deployers import tunnel as tunnel_module
from tools.deployers.base import DeployState, Project, StepError, sha256, write_manifest
from tools.deployers.fly import FlyDeployer, fly_manifest
from tools.deployers.local import LocalDeployer, stop
from tools.deployers.render import RenderDeployer, https_repository, render_manifest
from tools.deployers.tunnel import TunnelDeployer
from tools.tests.deploy_fakes import (
    CLOUDFLARED_RULES,
    FLY_APP,
    FLYCTL_RULES,
    LOCALTUNNEL_URL,
    NGROK_RULES,
    NGROK_URL,
    NPX_RULES,
    REDIS_URL,
    TUNNEL_URL,
    FakeBin,
    Rule,
    with_failure,
)

FLY_STEPS = ["launch", "postgres", "attach", "redis", "secrets", "deploy"]
# Fly app names and Render service names end up in DNS.
DNS_LABEL = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def make_project(root: Path, **settings: str) -> Project:
    # A deployable project has the https address of its web app; tests that need another
    # say so.
    return Project(
        root, "My App", "my_app", {"FRONTEND_URL": "https://app.example.com", **settings}
    )


def git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True)  # noqa: S603, S607 - fixed git commands


def said() -> tuple[list[str], Any]:
    lines: list[str] = []
    return lines, lines.append


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBin:
    fakes = FakeBin(tmp_path / "bin")
    monkeypatch.setenv("PATH", fakes.path())
    return fakes


# Manifests -------------------------------------------------------------------------------


def test_the_registry_names_every_target() -> None:
    assert sorted(DEPLOYERS) == ["fly", "local", "render", "tunnel"]
    assert all(DEPLOYERS[name].name == name for name in DEPLOYERS)


def test_fly_manifest_follows_the_configuration_rules() -> None:
    fly = tomllib.loads(fly_manifest("My App", "my-app", "ams"))
    assert DNS_LABEL.match(fly["app"])
    assert fly["primary_region"] == "ams"
    assert fly["build"] == {"dockerfile": "Dockerfile"}
    assert fly["env"]["ENVIRONMENT"] == "production"
    assert fly["deploy"]["release_command"] == "alembic upgrade head"
    processes = fly["processes"]
    assert processes == {"web": "python -m app", "worker": "python -m app.worker"}
    service = fly["http_service"]
    assert service["processes"] == ["web"]
    assert service["internal_port"] == int(fly["env"]["PORT"])
    assert [check["path"] for check in service["checks"]] == ["/health"]
    sized = sorted(group for vm in fly["vm"] for group in vm["processes"])
    assert sized == sorted(processes), "every process group needs its [[vm]] sizing"
    # Secrets are set with `fly secrets set`, never written here.
    assert not {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} & fly["env"].keys()


def test_render_manifest_follows_the_blueprint_rules() -> None:
    blueprint = yaml.safe_load(render_manifest("My App", "my_app", "frankfurt"))
    services = {service["name"]: service for service in blueprint["services"]}
    web, worker, keyvalue = services["my-app"], services["my-app-worker"], services["my-app-redis"]
    assert all(DNS_LABEL.match(name) for name in services)
    assert (web["type"], worker["type"], keyvalue["type"]) == ("web", "worker", "keyvalue")
    assert web["runtime"] == worker["runtime"] == "docker"
    assert web["healthCheckPath"] == "/health"
    assert web["preDeployCommand"] == "alembic upgrade head"
    assert worker["dockerCommand"] == "python -m app.worker"
    assert keyvalue["maxmemoryPolicy"] == "noeviction"
    assert keyvalue["ipAllowList"] == []
    databases = {database["name"] for database in blueprint["databases"]}
    groups = {group["name"]: group for group in blueprint["envVarGroups"]}
    regions = {service["region"] for service in blueprint["services"]}
    assert regions == {"frankfurt"} == {db["region"] for db in blueprint["databases"]}
    for service in (web, worker):
        variables = {var.get("key") or var["fromGroup"]: var for var in service["envVars"]}
        assert variables["DATABASE_URL"]["fromDatabase"]["name"] in databases
        assert variables["REDIS_URL"]["fromService"]["name"] in services
        assert variables["my-app-services"]["fromGroup"] in groups
        # Every value is a plain setting or a reference: no secret literal anywhere.
        assert "value" not in variables["SECRET_KEY"]
    assert secret_of(web) == {"key": "SECRET_KEY", "generateValue": True}
    assert secret_of(worker)["fromService"] == {
        "type": "web",
        "name": "my-app",
        "envVarKey": "SECRET_KEY",
    }
    asked = groups["my-app-services"]["envVars"]
    assert all(var["sync"] is False and "value" not in var for var in asked)


def secret_of(service: dict[str, Any]) -> dict[str, Any]:
    return next(var for var in service["envVars"] if var.get("key") == "SECRET_KEY")


# Writing manifests without losing edits ------------------------------------------------


def test_a_missing_manifest_is_written_and_recorded(tmp_path: Path) -> None:
    state = DeployState(tmp_path)
    assert write_manifest(tmp_path, "fly.toml", "one\n", state, ours=set()) == "wrote fly.toml"
    assert (tmp_path / "fly.toml").read_text() == "one\n"
    assert state.manifest_checksum("fly.toml") == sha256("one\n")


def test_an_unedited_manifest_is_refreshed_and_an_edited_one_kept(tmp_path: Path) -> None:
    state = DeployState(tmp_path)
    write_manifest(tmp_path, "fly.toml", "one\n", state, ours=set())
    assert write_manifest(tmp_path, "fly.toml", "one\n", state, ours=set()).endswith("up to date")
    assert write_manifest(tmp_path, "fly.toml", "two\n", state, ours=set()) == "refreshed fly.toml"
    assert (tmp_path / "fly.toml").read_text() == "two\n"

    (tmp_path / "fly.toml").write_text("two\n# my tweak\n")
    message = write_manifest(tmp_path, "fly.toml", "three\n", state, ours=set())
    assert "fly.toml.new" in message
    assert (tmp_path / "fly.toml").read_text() == "two\n# my tweak\n"
    assert (tmp_path / "fly.toml.new").read_text() == "three\n"


def test_the_template_rendering_counts_as_unedited(tmp_path: Path) -> None:
    """A manifest exactly as Copier wrote it is refreshed even with no record yet."""
    (tmp_path / "render.yaml").write_text("rendered\n")
    state = DeployState(tmp_path)
    message = write_manifest(tmp_path, "render.yaml", "new\n", state, ours={sha256("rendered\n")})
    assert message == "refreshed render.yaml"
    assert not (tmp_path / "render.yaml.new").exists()


def test_a_damaged_state_file_counts_as_no_record(tmp_path: Path) -> None:
    (tmp_path / ".deploy-state.json").write_text("{not json")
    (tmp_path / "fly.toml").write_text("mine\n")
    message = write_manifest(tmp_path, "fly.toml", "theirs\n", DeployState(tmp_path), ours=set())
    assert "fly.toml.new" in message
    assert (tmp_path / "fly.toml").read_text() == "mine\n"


# Plans ----------------------------------------------------------------------------------


def test_fly_plan_is_the_documented_sequence(tmp_path: Path, fake_bin: FakeBin) -> None:
    fake_bin.add("flyctl", FLYCTL_RULES)
    deployer = FlyDeployer(make_project(tmp_path), app=FLY_APP, region="ams")
    steps = deployer.plan()
    assert [step.key for step in steps] == FLY_STEPS
    commands = [step.argv[1:] for step in steps]
    assert commands[0][:4] == ("launch", "--no-deploy", "--copy-config", "--name")
    assert {"--no-db", "--no-redis", "--no-object-storage", "--yes"} <= set(commands[0])
    assert commands[1][:4] == ("postgres", "create", "--name", "my-app-db")
    assert commands[2] == ("postgres", "attach", "my-app-db", "--app", FLY_APP)
    assert commands[3][:4] == ("redis", "create", "--name", "my-app-redis")
    assert "--disable-eviction" in commands[3]
    assert commands[4][:5] == ("secrets", "set", "--app", FLY_APP, "--stage")
    assert commands[5] == ("deploy", "--app", FLY_APP, "--remote-only")
    assert all(step.purpose for step in steps)


def test_fly_plan_hides_secrets_and_leaves_local_services_out(tmp_path: Path) -> None:
    deployer = FlyDeployer(
        make_project(
            tmp_path,
            SMTP_HOST="smtp.mailgun.org",
            SMTP_USER="postmaster@example.com",
            SMTP_PASSWORD="mail-pass-123",
            S3_BUCKET="uploads",
            S3_ENDPOINT_URL="http://localhost:9000",
            FRONTEND_URL="http://localhost:3000",
        )
    )
    secrets_step = next(step for step in deployer.plan() if step.key == "secrets")
    assert f"SECRET_KEY={deployer.secret_key}" in secrets_step.argv
    assert "SMTP_PASSWORD=mail-pass-123" in secrets_step.argv
    assert "SMTP_HOST=smtp.mailgun.org" in secrets_step.argv
    shown = secrets_step.shown()
    assert deployer.secret_key not in shown
    assert "mail-pass-123" not in shown
    assert "SECRET_KEY=***" in shown
    # MinIO on this machine and a local frontend mean nothing on Fly.
    assert not any(word.startswith(("S3_", "FRONTEND_URL")) for word in secrets_step.argv)
    _, skipped = deployer.forwarded_settings()
    assert skipped == [
        "S3_ENDPOINT_URL (http://localhost:9000 is on this machine)",
        "FRONTEND_URL (http://localhost:3000 is on this machine)",
    ]
    assert [note.split(";")[0] for note in deployer.notes()] == [
        f"left out of the secrets: {line}" for line in skipped
    ]


def test_a_fresh_production_key_per_deployer(tmp_path: Path) -> None:
    first = FlyDeployer(make_project(tmp_path, SECRET_KEY="dev-key"))
    second = FlyDeployer(make_project(tmp_path, SECRET_KEY="dev-key"))
    assert first.secret_key != second.secret_key
    assert len(first.secret_key) >= 43
    assert "dev-key" not in first.secret_key


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("git@github.com:acme/billing.git", "https://github.com/acme/billing"),
        ("https://github.com/acme/billing.git", "https://github.com/acme/billing"),
        ("https://token@gitlab.com/acme/billing", "https://gitlab.com/acme/billing"),
        ("ssh://git@bitbucket.org/acme/billing.git", "https://bitbucket.org/acme/billing"),
        ("/srv/git/billing.git", None),
    ],
)
def test_render_deploy_link_from_the_git_remote(remote: str, expected: str | None) -> None:
    assert https_repository(remote) == expected


def test_render_plan_points_at_the_repository(tmp_path: Path) -> None:
    git("init", "--quiet", str(tmp_path))
    git("-C", str(tmp_path), "remote", "add", "origin", "git@github.com:acme/app.git")
    deployer = RenderDeployer(make_project(tmp_path))
    assert all(check.ok for check in deployer.prerequisites(execute=False))
    steps = {step.key: step for step in deployer.plan()}
    assert list(steps) == ["commit", "push", "blueprint", "settings"]
    assert (
        "https://render.com/deploy?repo=https://github.com/acme/app" in steps["blueprint"].purpose
    )
    assert "SMTP_PASSWORD" in steps["settings"].purpose


def test_render_without_a_remote_says_how_to_add_one(tmp_path: Path) -> None:
    git("init", "--quiet", str(tmp_path))
    (check,) = RenderDeployer(make_project(tmp_path)).prerequisites(execute=False)
    assert not check.ok
    assert "git remote add origin" in check.fix


# Running fly against a fake flyctl -------------------------------------------------------


def test_fly_runs_the_plan_in_order_and_passes_the_redis_url_on(
    tmp_path: Path, fake_bin: FakeBin
) -> None:
    fake_bin.add("flyctl", FLYCTL_RULES)
    deployer = FlyDeployer(make_project(tmp_path), app=FLY_APP, region="ams")
    assert all(check.ok for check in deployer.prerequisites(execute=True))
    state = DeployState(tmp_path)
    lines, say = said()
    outcome = deployer.run(say, state, execute=True)

    calls = [call[1:3] for call in fake_bin.calls()]
    assert calls == [
        ["auth", "whoami"],
        ["launch", "--no-deploy"],
        ["postgres", "create"],
        ["postgres", "attach"],
        ["redis", "create"],
        ["secrets", "set"],
        ["deploy", "--app"],
    ]
    secrets_call = fake_bin.calls()[5]
    assert f"REDIS_URL={REDIS_URL}" in secrets_call
    assert outcome.urls["app"] == "https://my-app.fly.dev"
    assert not any("s3cr3tpass" in line for line in lines), "the Redis password was printed"
    assert DeployState(tmp_path).target("fly")["done_steps"] == FLY_STEPS


def test_fly_stops_at_the_first_failure_with_its_output(tmp_path: Path, fake_bin: FakeBin) -> None:
    refusal = "Error: Name has already been taken\n"
    fake_bin.add("flyctl", with_failure(FLYCTL_RULES, "postgres create", refusal))
    deployer = FlyDeployer(make_project(tmp_path), app=FLY_APP)
    with pytest.raises(StepError) as failure:
        deployer.run(said()[1], DeployState(tmp_path), execute=True)
    assert failure.value.step.key == "postgres"
    assert "Name has already been taken" in failure.value.output
    assert [call[1] for call in fake_bin.calls()] == ["launch", "postgres"]
    assert DeployState(tmp_path).target("fly")["done_steps"] == ["launch"]


def test_a_rerun_skips_what_is_done_and_asks_for_the_redis_url_again(
    tmp_path: Path, fake_bin: FakeBin
) -> None:
    fake_bin.add("flyctl", with_failure(FLYCTL_RULES, "secrets set", "Error: timeout\n"))
    with pytest.raises(StepError, match="secrets"):
        FlyDeployer(make_project(tmp_path), app=FLY_APP).run(
            said()[1], DeployState(tmp_path), execute=True
        )

    fake_bin.log.unlink()
    fake_bin.add("flyctl", FLYCTL_RULES)
    lines, say = said()
    FlyDeployer(make_project(tmp_path), app=FLY_APP).run(say, DeployState(tmp_path), execute=True)
    # The Redis database exists since the first run; its URL comes from `redis status`.
    assert [call[1:3] for call in fake_bin.calls()] == [
        ["redis", "status"],
        ["secrets", "set"],
        ["deploy", "--app"],
    ]
    assert f"REDIS_URL={REDIS_URL}" in fake_bin.calls()[1]
    assert sum("skipped (done in an earlier run)" in line for line in lines) == 4


def test_fly_without_flyctl_or_a_login(
    tmp_path: Path, fake_bin: FakeBin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", fake_bin.path(only=True))
    frontend = "FRONTEND_URL is your web app's https address"
    checks = FlyDeployer(make_project(tmp_path)).prerequisites(execute=True)
    assert [(check.what, check.ok) for check in checks] == [
        ("flyctl on PATH", False),
        (frontend, True),
    ]
    assert "fly.io/install.sh" in checks[0].fix

    fake_bin.add("flyctl", with_failure(FLYCTL_RULES, "auth whoami", "Error: not logged in\n"))
    checks = FlyDeployer(make_project(tmp_path)).prerequisites(execute=True)
    assert [(check.what, check.ok) for check in checks] == [
        ("flyctl on PATH", True),
        (frontend, True),
        ("logged in to Fly.io", False),
    ]
    assert checks[2].fix == "run: flyctl auth login"


@pytest.mark.parametrize(
    "frontend", ["", "http://localhost:3000", "http://app.example.com", "https://127.0.0.1:3000"]
)
def test_fly_will_not_deploy_without_an_https_frontend_url(
    tmp_path: Path, fake_bin: FakeBin, monkeypatch: pytest.MonkeyPatch, frontend: str
) -> None:
    # Production refuses to start without one, so the deploy would end in a crash loop.
    monkeypatch.setenv("PATH", fake_bin.path(only=True))
    fake_bin.add("flyctl", FLYCTL_RULES)
    checks = FlyDeployer(make_project(tmp_path, FRONTEND_URL=frontend)).prerequisites(execute=True)
    refused = [check for check in checks if not check.ok]
    assert [check.what for check in refused] == ["FRONTEND_URL is your web app's https address"]
    assert "set FRONTEND_URL in .env" in refused[0].fix


def test_fly_needs_a_redis_url_in_the_output(tmp_path: Path, fake_bin: FakeBin) -> None:
    fake_bin.add(
        "flyctl", [Rule("redis create", "Something changed in this version\n"), *FLYCTL_RULES]
    )
    with pytest.raises(StepError, match="redis") as failure:
        FlyDeployer(make_project(tmp_path), app=FLY_APP).run(
            said()[1], DeployState(tmp_path), execute=True
        )
    assert "no redis:// URL" in failure.value.output
    assert "secrets" not in [call[1] for call in fake_bin.calls()]


# Tunnels ----------------------------------------------------------------------------------


def tunnel(tmp_path: Path, **settings: str) -> TunnelDeployer:
    return TunnelDeployer(make_project(tmp_path, PORT=str(free_port()), **settings))


def test_tunnel_prefers_cloudflared_then_ngrok_then_localtunnel(
    tmp_path: Path, fake_bin: FakeBin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", fake_bin.path(only=True))
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)

    def chosen() -> str | None:
        program = tunnel(tmp_path).program()
        return program.name if program else None

    assert chosen() is None
    fake_bin.add("npx", NPX_RULES)
    assert chosen() == "localtunnel"
    fake_bin.add("ngrok", NGROK_RULES)
    # ngrok needs an account's token; without one it is passed over.
    assert chosen() == "localtunnel"
    monkeypatch.setenv("NGROK_AUTHTOKEN", "2abc")
    assert chosen() == "ngrok"
    fake_bin.add("cloudflared", CLOUDFLARED_RULES)
    assert chosen() == "cloudflared"


@pytest.mark.parametrize(
    ("name", "rules", "url"),
    [
        ("cloudflared", CLOUDFLARED_RULES, TUNNEL_URL),
        ("ngrok", NGROK_RULES, NGROK_URL),
        ("npx", NPX_RULES, LOCALTUNNEL_URL),
    ],
)
def test_tunnel_url_is_read_from_the_programs_output(
    tmp_path: Path,
    fake_bin: FakeBin,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    rules: list[Rule],
    url: str,
) -> None:
    monkeypatch.setenv("PATH", fake_bin.path(only=True))
    monkeypatch.setenv("NGROK_AUTHTOKEN", "2abc")
    fake_bin.add(name, rules)
    deployer = tunnel(tmp_path)
    program = deployer.program()
    assert program is not None
    process, found = deployer.open_tunnel(program)
    try:
        assert found == url
        assert process.poll() is None, "the tunnel must keep running"
    finally:
        stop([process])
    (call,) = fake_bin.calls()
    assert str(deployer.port) in " ".join(call)


def test_a_tunnel_that_exits_without_a_url_says_what_it_printed(
    tmp_path: Path, fake_bin: FakeBin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", fake_bin.path(only=True))
    fake_bin.add(
        "cloudflared",
        [
            Rule(
                "tunnel",
                stderr="ERR failed to request quick Tunnel: 429 Too Many Requests\n",
                status=1,
            )
        ],
    )
    deployer = tunnel(tmp_path)
    program = deployer.program()
    assert program is not None
    with pytest.raises(RuntimeError, match="429 Too Many Requests") as failure:
        deployer.open_tunnel(program)
    assert "exit status 1" in str(failure.value)


# A tunnel program that starts a helper process of its own (as npx starts node), records
# the helper's pid, and then either prints a URL or keeps quiet, running on either way.
TUNNEL_WITH_A_HELPER = """#!{python}
import subprocess, sys, time
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
with open({pid_file!r}, "w") as record:
    record.write(str(helper.pid))
print("connecting to the edge...", flush=True)
if {gives_url!r}:
    print("|  {url}  |", flush=True)
time.sleep(300)
"""


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting to be reaped counts as gone)."""
    status = Path(f"/proc/{pid}/status")
    try:
        state = next(line for line in status.read_text().splitlines() if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError):
        return False
    return " Z " not in f"{state} "


def helper_gone(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def fake_tunnel_with_a_helper(fake_bin: FakeBin, tmp_path: Path, *, gives_url: bool) -> Path:
    pid_file = tmp_path / "helper.pid"
    program = fake_bin.directory / "cloudflared"
    program.write_text(
        TUNNEL_WITH_A_HELPER.format(
            python=sys.executable, pid_file=str(pid_file), gives_url=gives_url, url=TUNNEL_URL
        ),
        encoding="utf-8",
    )
    program.chmod(0o755)
    return pid_file


def test_a_silent_tunnel_stops_in_bounded_time_and_says_why(
    tmp_path: Path, fake_bin: FakeBin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", fake_bin.path(only=True))
    monkeypatch.setattr(tunnel_module, "URL_TIMEOUT_SECONDS", 3)
    pid_file = fake_tunnel_with_a_helper(fake_bin, tmp_path, gives_url=False)
    deployer = tunnel(tmp_path)
    program = deployer.program()
    assert program is not None
    started = time.monotonic()
    with pytest.raises(RuntimeError) as failure:
        deployer.open_tunnel(program)
    assert time.monotonic() - started < 30
    message = str(failure.value)
    assert "cloudflared printed no public URL within 3 s" in message
    assert "connecting to the edge..." in message
    assert "no connection?" in message
    # The program and the helper it started are both gone.
    assert helper_gone(int(pid_file.read_text()))


def test_stopping_a_tunnel_stops_what_it_started(
    tmp_path: Path, fake_bin: FakeBin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", fake_bin.path(only=True))
    pid_file = fake_tunnel_with_a_helper(fake_bin, tmp_path, gives_url=True)
    deployer = tunnel(tmp_path)
    program = deployer.program()
    assert program is not None
    process, url = deployer.open_tunnel(program)
    assert url == TUNNEL_URL
    helper = int(pid_file.read_text())
    assert running(helper)
    stop([process])
    assert helper_gone(helper)


def test_no_tunnel_program_says_how_to_install_one(
    tmp_path: Path, fake_bin: FakeBin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", fake_bin.path(only=True))
    deployer = tunnel(tmp_path)
    checks = {check.what: check for check in deployer.prerequisites(execute=False)}
    assert not checks["a tunnel program"].ok
    assert "cloudflared" in checks["a tunnel program"].fix
    assert "NGROK_AUTHTOKEN" in checks["a tunnel program"].fix
    with pytest.raises(RuntimeError, match="no tunnel program"):
        deployer.run(said()[1], DeployState(tmp_path), execute=False)


def test_a_busy_port_is_a_missing_prerequisite(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        deployer = TunnelDeployer(make_project(tmp_path, PORT=str(port)))
        checks = {check.what: check for check in deployer.prerequisites(execute=False)}
    check = checks[f"port {port} free on 127.0.0.1"]
    assert not check.ok
    assert f"--port {port + 1}" in check.fix


# The README's Deploy section shows the plans as they are ----------------------------------


def readme_deploy_section() -> str:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    return text[text.index("## Day one") : text.index("## Configuration")]


def readme_commands(program: str) -> list[str]:
    """Command lines of the README's code blocks, without comments and optional parts."""
    return [
        line.split("  #")[0].split(" [")[0].rstrip()
        for line in readme_deploy_section().splitlines()
        if line.startswith(f"{program} ")
    ]


def test_the_readme_shows_the_fly_plan(tmp_path: Path, fake_bin: FakeBin) -> None:
    fake_bin.add("flyctl", FLYCTL_RULES)
    project = make_project(tmp_path, FRONTEND_URL="https://WEB-APP")
    plan = FlyDeployer(project, app="APP", region="REGION").plan()
    assert readme_commands("flyctl") == [step.shown() for step in plan]


def test_the_readme_shows_the_render_plan(tmp_path: Path) -> None:
    plan = RenderDeployer(make_project(tmp_path)).plan()
    assert readme_commands("git") == [step.shown() for step in plan if step.argv]


def test_the_readme_shows_the_tunnel_commands(
    tmp_path: Path, fake_bin: FakeBin, monkeypatch: pytest.MonkeyPatch
) -> None:
    section = " ".join(readme_deploy_section().split())
    monkeypatch.setenv("PATH", fake_bin.path(only=True))
    monkeypatch.setenv("NGROK_AUTHTOKEN", "2abc")
    for name, rules in (
        ("npx", NPX_RULES),
        ("ngrok", NGROK_RULES),
        ("cloudflared", CLOUDFLARED_RULES),
    ):
        fake_bin.add(name, rules)
        program = TunnelDeployer(make_project(tmp_path, PORT="8000")).program()
        assert program is not None
        assert f"`{program.step.shown()}`" in section, program.name


# The local target with Redis: the API and a worker that runs its jobs ---------------------


@pytest.mark.redis
def test_local_serves_the_api_and_a_worker_that_runs_its_jobs(
    settings: Settings,
    redis_url: str,
    smtp_settings: dict[str, Any],
    mailbox: Mailbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environment = {
        **settings_env(settings),
        "REDIS_URL": redis_url,
        **{name: str(value) for name, value in smtp_settings.items()},
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    root = Path(__file__).resolve().parents[2]
    deployer = LocalDeployer(
        Project(root, "My App", "my_app", {**environment, "PORT": str(free_port())})
    )
    assert [step.key for step in deployer.plan()] == ["api", "worker"]

    outcome = deployer.serve(said()[1])
    try:
        assert len(outcome.processes) == 2
        registered = httpx.post(
            f"{outcome.urls['API']}/api/v1/auth/register",
            json={"email": "local@example.com", "password": PASSWORD},
            timeout=30,
        )
        assert registered.status_code == 202, registered.text
        # The request only queued the email; the worker the target started sends it.
        deadline = time.monotonic() + 60
        while not mailbox.to("local@example.com") and time.monotonic() < deadline:
            time.sleep(0.2)
        (message,) = mailbox.to("local@example.com")
        assert message["Subject"] == "Confirm your email address"
    finally:
        stop(outcome.processes)
    assert all(process.returncode is not None for process in outcome.processes)
