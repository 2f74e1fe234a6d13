"""render: render.yaml (a Render Blueprint) and the steps that apply it.

Render builds Blueprints from a git repository, so the action here is to write the
manifest and say exactly what to push and where to click; nothing runs on Render's side
from this machine.
"""

from __future__ import annotations

import re
import subprocess
from string import Template

from .base import Check, Deployer, DeployState, Outcome, Printer, Step, app_name

DEFAULT_REGION = "oregon"
REGIONS = ("oregon", "ohio", "virginia", "frankfurt", "singapore")
# The settings Render asks for when the Blueprint is first applied (sync: false).
ASKED_SETTINGS = (
    "FRONTEND_URL",
    "SMTP_HOST",
    "SMTP_USER",
    "SMTP_PASSWORD",
    "S3_BUCKET",
    "S3_ENDPOINT_URL",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
)

# What the web service and the worker both read: the asked-for settings, the database
# and the Key Value instance.
SHARED_ENV = Template("""\
      - fromGroup: $services_group
      - key: DATABASE_URL
        fromDatabase:
          name: $database_name
          property: connectionString
      - key: REDIS_URL
        fromService:
          type: keyvalue
          name: $keyvalue_name
          property: connectionString""")

MANIFEST = Template("""\
# Render Blueprint for $project_name; reference: https://render.com/docs/blueprint-spec
# `python -m tools.day_one --target render` writes and refreshes this file; when you edit
# it, later refreshes go to render.yaml.new instead.
#
# The web service, the worker, the Key Value instance and the database share one region
# so that they talk over Render's private network. No secret is written here: Render
# generates SECRET_KEY when the Blueprint is first applied, the connection URLs come from
# the resources, and the storage and mail settings are asked for (envVarGroups below).

services:
  - type: web
    name: $base_name
    runtime: docker
    dockerfilePath: ./Dockerfile
    dockerContext: .
    region: $region
    # Pre-deploy commands need a paid instance type, and free instances sleep when idle.
    plan: starter
    healthCheckPath: /health
    # Runs before each deploy in a separate instance with this service's environment; a
    # failing migration cancels the deploy while the previous release keeps serving.
    preDeployCommand: alembic upgrade head
    # A pushed commit is deployed only after the project's CI has passed on it.
    autoDeployTrigger: checksPass
    envVars:
      # Production makes the app refuse to start without a strong SECRET_KEY.
      - key: ENVIRONMENT
        value: production
      - key: LOG_LEVEL
        value: INFO
      # Cloudflare and then Render's proxy each append to X-Forwarded-For: the client's
      # address is the second entry from the right. Rate limits read it.
      - key: FORWARDED_HOPS
        value: "2"
      - key: SECRET_KEY
        generateValue: true
$shared_env

  # Runs the background jobs (email, file processing) from the Key Value queue.
  - type: worker
    name: $base_name-worker
    runtime: docker
    dockerfilePath: ./Dockerfile
    dockerContext: .
    dockerCommand: python -m app.worker
    region: $region
    plan: starter
    autoDeployTrigger: checksPass
    envVars:
      - key: ENVIRONMENT
        value: production
      - key: LOG_LEVEL
        value: INFO
      # The web service's generated key: production settings refuse to start without one.
      - key: SECRET_KEY
        fromService:
          type: web
          name: $base_name
          envVarKey: SECRET_KEY
$shared_env

  - type: keyvalue
    name: $keyvalue_name
    region: $region
    # Paid instances persist to disk, so queued jobs survive a restart.
    plan: starter
    # It holds the job queue, not a cache: when full it must refuse new writes loudly
    # rather than silently evict jobs that are waiting to run.
    maxmemoryPolicy: noeviction
    # An empty list closes the instance to the internet; services connect internally.
    ipAllowList: []

envVarGroups:
  # Outside services that the web service and the worker share. Render asks for each
  # value when the Blueprint is first applied (sync: false keeps them out of this file).
  # Left empty, email goes to the log only and uploads to the instance's own disk, which
  # a deploy wipes: set S3_* (any S3-compatible storage) and SMTP_* before going live.
  - name: $services_group
    envVars:
$asked_settings
databases:
  - name: $database_name
    databaseName: $slug
    user: $slug
    region: $region
    # Free databases expire after a month; this is the smallest plan that lasts.
    plan: basic-256mb
    # Pinned so that production runs the major version the project is developed against.
    postgresMajorVersion: "17"
    # Internal connections only; add an entry (your IP or CIDR) to reach it with psql.
    ipAllowList: []
""")


def render_manifest(project_name: str, slug: str, region: str) -> str:
    """render.yaml for the project `slug` in `region`."""
    base_name = app_name(slug)
    asked = "".join(f"      - key: {key}\n        sync: false\n" for key in ASKED_SETTINGS)
    names = {
        "keyvalue_name": f"{base_name}-redis",
        "database_name": f"{base_name}-db",
        "services_group": f"{base_name}-services",
    }
    return MANIFEST.substitute(
        project_name=project_name,
        slug=slug,
        region=region,
        base_name=base_name,
        asked_settings=asked,
        shared_env=SHARED_ENV.substitute(names),
        **names,
    )


def https_repository(remote: str) -> str | None:
    """A git remote as the https address Render's deploy link takes, if it is one."""
    ssh = re.fullmatch(r"(?:ssh://)?git@([^:/]+)[:/](.+?)(?:\.git)?/?", remote)
    if ssh:
        return f"https://{ssh.group(1)}/{ssh.group(2)}"
    web = re.fullmatch(r"https://(?:[^@/]+@)?([^/]+)/(.+?)(?:\.git)?/?", remote)
    if web:
        return f"https://{web.group(1)}/{web.group(2)}"
    return None


class RenderDeployer(Deployer):
    name = "render"
    description = "Render: a Blueprint with the API, a worker, Key Value and Postgres"
    manifest_file = "render.yaml"

    @property
    def url(self) -> str:
        # Render appends a suffix when the name is taken; the dashboard shows the final one.
        return f"https://{app_name(self.project.slug)}.onrender.com"

    def manifest(self) -> str:
        return render_manifest(self.project.name, self.project.slug, self.region or DEFAULT_REGION)

    def template_manifest(self) -> str:
        return render_manifest(
            self.project.name, self.project.slug, self.template_region or DEFAULT_REGION
        )

    def remote(self) -> str | None:
        result = subprocess.run(
            ["git", "remote", "get-url", "origin"],  # noqa: S607 - git from PATH
            cwd=self.project.root,
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else None

    def prerequisites(self, *, execute: bool) -> list[Check]:
        return [
            Check(
                "a git remote named origin (Render deploys from your repository)",
                self.remote() is not None,
                "create a repository on GitHub, GitLab or Bitbucket, then: "
                "git remote add origin <its URL>",
            )
        ]

    def plan(self) -> list[Step]:
        remote = self.remote()
        repository = https_repository(remote) if remote else None
        link = (
            f"https://render.com/deploy?repo={repository}"
            if repository
            else "https://dashboard.render.com/blueprint/new"
        )
        asked = ", ".join(ASKED_SETTINGS)
        return [
            Step(
                "commit",
                "commit the Blueprint with the rest of the project",
                ("git", "commit", "--message", "Add the Render Blueprint", "--", "render.yaml"),
            ),
            Step("push", "push it to the repository Render will deploy from", ("git", "push")),
            Step(
                "blueprint",
                f"open {link} in a browser and apply the Blueprint: Render creates the web "
                "service, the worker, Key Value and Postgres, generates SECRET_KEY and runs "
                "the migrations before the first deploy",
                (),
            ),
            Step(
                "settings",
                f"fill in the values Render asks for ({asked}); left empty, email goes "
                "to the log and uploads to the instance's disk",
                (),
            ),
        ]

    def run(self, say: Printer, state: DeployState, *, execute: bool) -> Outcome:
        if execute:
            say(
                "Render applies Blueprints from your repository: run the steps above "
                "yourself; nothing was run from here."
            )
        return Outcome(urls={"app (once deployed)": self.url})
