"""Stand-ins for flyctl, cloudflared, ngrok and npx: executables on PATH that record
their arguments and print what the real programs print.

No cloud or tunnel service is reachable from tests, so each fake answers from a table of
(argument prefix → output, exit status) rules. Tunnel fakes keep running after printing
their URL, as the real programs do, until they are stopped.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

FAKE_PROGRAM = """#!{python}
import json, os, sys, time

with open({log!r}, "a", encoding="utf-8") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\\n")
arguments = " ".join(sys.argv[1:])
for prefix, stdout, stderr, status, linger in json.loads({rules!r}):
    if arguments.startswith(prefix):
        sys.stdout.write(stdout)
        sys.stdout.flush()
        sys.stderr.write(stderr)
        sys.stderr.flush()
        time.sleep(linger)
        sys.exit(status)
sys.stderr.write("fake: no rule for " + arguments + "\\n")
sys.exit(2)
"""

FLY_APP = "my-app"
REDIS_URL = "redis://default:s3cr3tpass@fly-my-app-redis.upstash.io:6379"
TUNNEL_URL = "https://quiet-lake-sample-words.trycloudflare.com"
NGROK_URL = "https://3f2a-198-51-100-7.ngrok-free.app"
LOCALTUNNEL_URL = "https://brave-otter-42.loca.lt"


@dataclass(frozen=True)
class Rule:
    prefix: str
    stdout: str = ""
    stderr: str = ""
    status: int = 0
    linger: float = 0


FLYCTL_RULES = [
    Rule("auth whoami", "dev@example.com\n"),
    Rule(
        "launch",
        "An existing fly.toml file was found for app my-app\n"
        "Using build strategies '[the \"Dockerfile\" dockerfile]'.\n"
        "Created app 'my-app' in organization 'personal'\n"
        "Your app is ready! Deploy with `flyctl deploy`\n",
    ),
    Rule(
        "postgres create",
        "Creating postgres cluster my-app-db in organization personal\n"
        "Postgres cluster my-app-db created\n"
        "  Username:    postgres\n  Password:    Zq7x0pwd\n  Hostname:    my-app-db.internal\n",
    ),
    Rule(
        "postgres attach",
        "Postgres cluster my-app-db is now attached to my-app\n"
        "The following secret was added to my-app:\n"
        "  DATABASE_URL=postgres://my_app:Zq7x0pwd@my-app-db.flycast:5432/my_app?sslmode=disable\n",
    ),
    Rule(
        "redis create",
        "\nYour database my-app-redis is ready. Apps in the personal org can connect to "
        f"Redis at {REDIS_URL}\n\n"
        "If you have redis-cli installed, use fly redis connect to get a Redis console.\n",
    ),
    Rule(
        "redis status", f"Redis\n  Name           = my-app-redis\n  Private URL    = {REDIS_URL}\n"
    ),
    Rule(
        "secrets set",
        "Secrets have been staged, but not set on VMs. Deploy or update machines in this "
        "app for the secrets to take effect.\n",
    ),
    Rule(
        "deploy",
        "==> Verifying app config\n--> Verified app config\n"
        "Running my-app release_command: alembic upgrade head\n"
        "Visit your newly deployed app at https://my-app.fly.dev/\n",
    ),
]

CLOUDFLARED_RULES = [
    Rule(
        "tunnel",
        stderr=(
            "2026-11-25T10:00:00Z INF Requesting new quick Tunnel on trycloudflare.com...\n"
            "2026-11-25T10:00:01Z INF +----------------------------------------------+\n"
            "2026-11-25T10:00:01Z INF |  Your quick Tunnel has been created! Visit it "
            "at (it may take some time to be reachable):  |\n"
            f"2026-11-25T10:00:01Z INF |  {TUNNEL_URL}                  |\n"
            "2026-11-25T10:00:01Z INF +----------------------------------------------+\n"
        ),
        linger=300,
    )
]

NGROK_RULES = [
    Rule(
        "http",
        't=2026-11-25T10:00:00+0000 lvl=info msg="starting web service" obj=web '
        "addr=127.0.0.1:4040\n"
        't=2026-11-25T10:00:01+0000 lvl=info msg="started tunnel" obj=tunnels '
        f"name=command_line addr=http://127.0.0.1:8000 url={NGROK_URL}\n",
        linger=300,
    )
]

NPX_RULES = [Rule("--yes localtunnel", f"your url is: {LOCALTUNNEL_URL}\n", linger=300)]


def with_failure(rules: list[Rule], prefix: str, stderr: str, status: int = 1) -> list[Rule]:
    """The same rules, except that commands starting with `prefix` fail."""
    return [Rule(prefix, stderr=stderr, status=status), *rules]


class FakeBin:
    """A directory of fake programs, and the log of every call they received."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.log = directory / "calls.jsonl"
        directory.mkdir(parents=True, exist_ok=True)

    def add(self, name: str, rules: list[Rule]) -> None:
        table = json.dumps(
            [[rule.prefix, rule.stdout, rule.stderr, rule.status, rule.linger] for rule in rules]
        )
        program = self.directory / name
        program.write_text(
            FAKE_PROGRAM.format(python=sys.executable, log=str(self.log), rules=table),
            encoding="utf-8",
        )
        program.chmod(0o755)

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]

    def path(self, *, only: bool = False) -> str:
        """A PATH with the fakes first; with only=True, the fakes and nothing else."""
        if only:
            return str(self.directory)
        return f"{self.directory}{os.pathsep}{os.environ.get('PATH', '')}"
