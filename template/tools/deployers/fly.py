"""fly: fly.toml and the flyctl commands that create, provision and deploy the app."""

from __future__ import annotations

import re
import secrets
import subprocess
from string import Template

from .base import (
    Check,
    Deployer,
    DeployState,
    Outcome,
    Printer,
    Project,
    Step,
    StepError,
    app_name,
    find_program,
    run_step,
)

DEFAULT_REGION = "iad"
REGION_CODE = re.compile(r"^[a-z]{3}$")
APP_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
INSTALL_HELP = (
    "install flyctl: curl -L https://fly.io/install.sh | sh (https://fly.io/docs/flyctl/install/)"
)
REDIS_URL_PATTERN = re.compile(r"rediss?://\S+")
# Settings copied from .env to Fly secrets, group by group: a group goes when its first
# setting is set and none of it names a service on this machine (Mailpit, MinIO).
FORWARDED_GROUPS = (
    ("SMTP_HOST", "SMTP_PORT", "SMTP_SECURITY", "SMTP_USER", "SMTP_PASSWORD"),
    (
        "S3_BUCKET",
        "S3_ENDPOINT_URL",
        "S3_REGION",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
        "S3_FORCE_PATH_STYLE",
    ),
    ("FRONTEND_URL",),
    ("EMAIL_FROM",),
)
HIDDEN_SETTINGS = ("SMTP_PASSWORD", "S3_SECRET_ACCESS_KEY")
LOCAL_HOST = re.compile(r"localhost|127\.0\.0\.1|\[::1\]|\bminio\b|\bmailpit\b")

MANIFEST = Template("""\
# Fly.io configuration for $project_name; reference: https://fly.io/docs/reference/configuration/
# `python -m tools.day_one --target fly` writes and refreshes this file; when you edit it,
# later refreshes go to fly.toml.new instead.
#
# Secrets never go in this file: SECRET_KEY, REDIS_URL and other credentials are set with
# `fly secrets set`, DATABASE_URL by attaching a Postgres cluster. Fly hands them to every
# machine, the release command's included, as environment variables. Before going live,
# also set FRONTEND_URL, SMTP_HOST, SMTP_USER and SMTP_PASSWORD, and S3_BUCKET,
# S3_ENDPOINT_URL, S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY (Tigris or any S3-compatible
# storage): without them email goes to the log only and uploads to the machine's disk,
# which a deploy replaces.

# Fly app names are global DNS labels: lowercase letters, digits and hyphens.
app = "$app"
primary_region = "$region"
# uvicorn drains the requests in flight on SIGTERM; the timeout bounds how long a slow one
# may hold up a deploy or an auto-stop before the machine is killed.
kill_signal = "SIGTERM"
kill_timeout = 30

[build]
dockerfile = "Dockerfile"

[env]
# Production makes the app refuse to start without a strong SECRET_KEY secret.
ENVIRONMENT = "production"
LOG_LEVEL = "INFO"
HOST = "0.0.0.0"
PORT = "8000"
# Fly's proxy writes the client's address into this header itself; rate limits read it.
CLIENT_IP_HEADER = "Fly-Client-IP"
# Prometheus metrics, on a port the proxy does not route: see [metrics].
METRICS_PORT = "9091"

[deploy]
# Runs once per deploy in a temporary machine built from the new image, before any machine
# is replaced: a failing migration stops the deploy while the old release keeps serving.
release_command = "alembic upgrade head"

# Each process group gets its own machines from the same image; the web service, checks
# and sizing below name the group they apply to.
[processes]
web = "python -m app"
# Runs the background jobs (email, file processing) from the Redis queue.
worker = "python -m app.worker"

[http_service]
processes = ["web"]
internal_port = 8000
force_https = true
# Machines beyond the first stop when idle and start again on demand; one always runs in
# the primary region, so no request waits for a cold start.
auto_stop_machines = "stop"
auto_start_machines = true
min_machines_running = 1

[http_service.concurrency]
# The proxy pools connections to the app, so in-flight requests measure load better than
# open connections. Past the soft limit it prefers (and starts) another machine.
type = "requests"
soft_limit = 50
hard_limit = 100

# Liveness only: a database outage must not take every machine out of rotation at once;
# /health/ready reports dependencies for humans and monitors instead.
[[http_service.checks]]
grace_period = "10s"
interval = "15s"
timeout = "5s"
method = "GET"
path = "/health"

# Fly's own Prometheus scrapes the web machines' metrics over the private network and
# shows them on the app's Grafana dashboard; nothing from the internet reaches the port.
[metrics]
port = 9091
path = "/metrics"
processes = ["web"]

[[vm]]
processes = ["web"]
size = "shared-cpu-1x"
# Each Argon2 password hash takes 64 MiB on top of the app itself, so 256 MB runs out
# under a few concurrent logins.
memory = "512mb"

[[vm]]
processes = ["worker"]
size = "shared-cpu-1x"
memory = "512mb"
""")


def fly_manifest(project_name: str, app: str, region: str) -> str:
    """fly.toml for the app `app` in `region`."""
    return MANIFEST.substitute(project_name=project_name, app=app, region=region)


def is_local(value: str) -> bool:
    return bool(LOCAL_HOST.search(value))


class FlyDeployer(Deployer):
    name = "fly"
    description = "Fly.io: the API and a worker as process groups, Postgres and Upstash Redis"
    manifest_file = "fly.toml"

    def __init__(
        self,
        project: Project,
        *,
        app: str | None = None,
        region: str | None = None,
        template_region: str = DEFAULT_REGION,
    ) -> None:
        super().__init__(project, app=app, region=region, template_region=template_region)
        # A production key of its own: the one in .env signs development tokens only.
        self.secret_key = secrets.token_urlsafe(48)
        self.flyctl = find_program("flyctl", "fly") or "flyctl"

    @property
    def url(self) -> str:
        return f"https://{self.app}.fly.dev"

    def manifest(self) -> str:
        return fly_manifest(self.project.name, self.app, self.region or DEFAULT_REGION)

    def template_manifest(self) -> str:
        return fly_manifest(
            self.project.name, app_name(self.project.slug), self.template_region or DEFAULT_REGION
        )

    def forwarded_settings(self) -> tuple[dict[str, str], list[str]]:
        """Settings from .env worth sending to Fly, and the groups left out and why."""
        forwarded: dict[str, str] = {}
        skipped: list[str] = []
        for group in FORWARDED_GROUPS:
            values = {key: self.project.setting(key) for key in group if self.project.setting(key)}
            if group[0] not in values:
                continue
            local = next((key for key, value in values.items() if is_local(value)), None)
            if local:
                skipped.append(f"{local} ({values[local]} is on this machine)")
                continue
            forwarded.update(values)
        return forwarded, skipped

    def plan(self) -> list[Step]:
        fly, app, region = self.flyctl, self.app, self.region or DEFAULT_REGION
        database, redis = f"{app}-db", f"{app}-redis"
        forwarded, _ = self.forwarded_settings()
        # {redis_url} is filled in at run time from `flyctl redis create`'s output.
        hidden = {
            self.secret_key,
            "{redis_url}",
            *(forwarded.get(key, "") for key in HIDDEN_SETTINGS),
        }
        settings = [f"{key}={value}" for key, value in sorted(forwarded.items())]
        return [
            Step(
                "launch",
                f"create the app {app} from fly.toml, without deploying and without "
                "letting launch provision anything (the next steps do)",
                (
                    fly,
                    "launch",
                    "--no-deploy",
                    "--copy-config",
                    "--name",
                    app,
                    "--region",
                    region,
                    "--yes",
                    "--no-db",
                    "--no-redis",
                    "--no-object-storage",
                ),
            ),
            Step(
                "postgres",
                f"create a single-node Postgres cluster {database} (for Fly's managed Postgres "
                "instead: fly mpg create, then fly mpg attach)",
                (
                    fly,
                    "postgres",
                    "create",
                    "--name",
                    database,
                    "--region",
                    region,
                    "--initial-cluster-size",
                    "1",
                    "--vm-size",
                    "shared-cpu-1x",
                    "--volume-size",
                    "1",
                ),
            ),
            Step(
                "attach",
                f"attach it to {app}: a database and user for the app, and the DATABASE_URL secret",
                (fly, "postgres", "attach", database, "--app", app),
            ),
            Step(
                "redis",
                f"create an Upstash Redis database {redis} for the job queue, without "
                "eviction (queued jobs must never be dropped to free memory)",
                (
                    fly,
                    "redis",
                    "create",
                    "--name",
                    redis,
                    "--region",
                    region,
                    "--no-replicas",
                    "--disable-eviction",
                ),
            ),
            Step(
                "secrets",
                "store the secrets: a new SECRET_KEY, REDIS_URL (printed by the previous "
                "step) and the mail and storage settings from .env; staged, the deploy "
                "applies them",
                (
                    fly,
                    "secrets",
                    "set",
                    "--app",
                    app,
                    "--stage",
                    f"SECRET_KEY={self.secret_key}",
                    "REDIS_URL={redis_url}",
                    *settings,
                ),
                hidden=frozenset(hidden),
            ),
            Step(
                "deploy",
                "build the image on Fly's builders, run the migrations (release_command), "
                "then start the web and worker machines",
                (fly, "deploy", "--app", app, "--remote-only"),
            ),
        ]

    def notes(self) -> list[str]:
        _, skipped = self.forwarded_settings()
        return [
            f"left out of the secrets: {line}; set a production value with "
            f"flyctl secrets set --app {self.app}"
            for line in skipped
        ]

    def prerequisites(self, *, execute: bool) -> list[Check]:
        if not execute:
            return []
        found = find_program("flyctl", "fly")
        frontend = self.project.setting("FRONTEND_URL")
        checks = [
            Check("flyctl on PATH", found is not None, INSTALL_HELP),
            # Production refuses to start without it: links in emails must reach a page.
            Check(
                "FRONTEND_URL is your web app's https address",
                frontend.startswith("https://") and not is_local(frontend),
                "set FRONTEND_URL in .env to the https address of the web app that opens "
                "the links in emails (production refuses a local or http one)",
            ),
        ]
        if found:
            whoami = subprocess.run(  # noqa: S603 - flyctl from PATH, fixed arguments
                [found, "auth", "whoami"], capture_output=True, text=True, check=False
            )
            checks.append(
                Check("logged in to Fly.io", whoami.returncode == 0, "run: flyctl auth login")
            )
        return checks

    def redis_url(self, output: str, say: Printer) -> str:
        match = REDIS_URL_PATTERN.search(output)
        if match is None:
            raise StepError(
                Step("redis", "read the Redis URL", ("flyctl", "redis", "create")),
                0,
                f"no redis:// URL in the output:\n{output}",
            )
        say("  read REDIS_URL from its output")
        return match.group(0)

    def run(self, say: Printer, state: DeployState, *, execute: bool) -> Outcome:
        record = state.target(self.name)
        done: list[str] = list(record.get("done_steps", []))
        if not execute:
            say(
                "Plan only: add --execute to run it here (flyctl installed and logged in), "
                "or run the commands yourself in this order."
            )
            return Outcome(urls={"app (once deployed)": self.url})
        # No docs link: production serves no /docs unless DOCS_ENABLED says so.
        outcome = Outcome(urls={"app": self.url, "health": f"{self.url}/health"})
        values: dict[str, str] = {}
        for step in self.plan():
            if step.key in done and step.key != "deploy":
                say(f"skipped (done in an earlier run): {step.purpose}")
                continue
            if step.key == "secrets" and "redis_url" not in values:
                status = Step("redis", "", (self.flyctl, "redis", "status", f"{self.app}-redis"))
                values["redis_url"] = self.redis_url(run_step(status, cwd=self.project.root), say)
            argv = tuple(
                word.replace("{redis_url}", values.get("redis_url", "")) for word in step.argv
            )
            resolved = Step(step.key, step.purpose, argv, step.hidden | set(values.values()))
            say(f"running: {resolved.shown()}")
            output = run_step(resolved, cwd=self.project.root)
            if step.key == "redis":
                values["redis_url"] = self.redis_url(output, say)
            if step.key not in done:
                done.append(step.key)
            record["done_steps"] = done
            state.save()
            outcome.done.append(f"ran {resolved.shown()}")
        return outcome
