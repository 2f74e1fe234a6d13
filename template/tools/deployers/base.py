"""What every deployer has in common: the project it deploys, the steps it plans, the
manifests it writes and the record it keeps.

Deployers use the standard library only. Copier imports them when it renders fly.toml and
render.yaml for a new project, so that the manifest a deployer refreshes later is the
very one the template wrote.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

# Machine-local: last run, local and tunnel URLs. Gitignored, because `copier update` needs
# a clean tree and a file rewritten by every run would keep it dirty.
STATE_FILE = ".deploy-state.json"

Printer = Callable[[str], None]
PLAIN_WORD = re.compile(r"^[\w@%+=:,./*-]+$")


def app_name(slug: str) -> str:
    """The project slug as a DNS label: Fly app names and Render service names."""
    return re.sub(r"_+", "-", slug).strip("-")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Project:
    """The generated project as the deployers see it."""

    root: Path
    name: str
    slug: str
    # .env's values with the process environment on top, as the app itself reads them.
    settings: Mapping[str, str]

    @property
    def backend(self) -> Path:
        return self.root / "backend"

    def setting(self, key: str) -> str:
        return self.settings.get(key, "").strip()


@dataclass(frozen=True)
class Step:
    """One command of a plan, with what it is for."""

    key: str
    purpose: str
    argv: tuple[str, ...]
    # Values shown as *** when the plan is printed (passwords, keys).
    hidden: frozenset[str] = frozenset()

    def shown(self) -> str:
        """The command as the user would type it: program name only, secrets hidden."""
        words = [Path(self.argv[0]).name, *self.argv[1:]] if self.argv else []
        shown = []
        for word in words:
            for value in self.hidden:
                if value:
                    word = word.replace(value, "***")
            # Hidden values stay readable (KEY=***); everything else is quoted for a shell.
            shown.append(word if PLAIN_WORD.match(word) else shlex.quote(word))
        return " ".join(shown)


@dataclass(frozen=True)
class Check:
    """A prerequisite: what is needed, whether it is there, and how to get it."""

    what: str
    ok: bool
    fix: str = ""


@dataclass
class Outcome:
    """What a deployer's action left behind, for the summary and the state file."""

    urls: dict[str, str] = field(default_factory=dict)
    # Changes made outside this machine (commands run on a platform), for the summary.
    done: list[str] = field(default_factory=list)
    # Running processes (local API, worker, tunnel) that day_one keeps in the foreground.
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)


class StepError(Exception):
    """A planned command exited with an error; its output says why."""

    def __init__(self, step: Step, returncode: int, output: str) -> None:
        super().__init__(f"`{step.shown()}` failed with exit status {returncode}")
        self.step = step
        self.returncode = returncode
        self.output = output


class DeployState:
    """The one file (STATE_FILE) where deployers remember what they did."""

    def __init__(self, root: Path) -> None:
        self.path = root / STATE_FILE
        try:
            self.data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.data = {}
        except (OSError, ValueError):
            # A damaged record costs only its memory of edits: manifests are then
            # treated as the user's and refreshed beside them as .new files.
            self.data = {}

    def target(self, name: str) -> dict[str, Any]:
        targets: dict[str, dict[str, Any]] = self.data.setdefault("targets", {})
        return targets.setdefault(name, {})

    def manifest_checksum(self, file_name: str) -> str | None:
        checksum = self.data.get("manifests", {}).get(file_name)
        return checksum if isinstance(checksum, str) else None

    def record_manifest(self, file_name: str, content: str) -> None:
        self.data.setdefault("manifests", {})[file_name] = sha256(content)

    def record_run(self, target: str, **details: Any) -> None:
        self.data["target"] = target
        self.data["last_run"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.target(target).update(details)

    def save(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n", "utf-8")


def write_manifest(
    root: Path, file_name: str, content: str, state: DeployState, *, ours: set[str]
) -> str:
    """Write or refresh a manifest without ever overwriting the user's edits.

    `ours` holds checksums of contents this project's tooling produced (the template's
    rendering); with the checksum of the deployer's last write they mark a file as
    unedited. Anything else is the user's: the new version goes to FILE.new beside it.
    Returns a sentence saying what happened.
    """
    path = root / file_name
    if not path.exists():
        path.write_text(content, encoding="utf-8")
        state.record_manifest(file_name, content)
        return f"wrote {file_name}"
    current = path.read_text(encoding="utf-8")
    if current == content:
        state.record_manifest(file_name, content)
        return f"{file_name} is up to date"
    known = {*ours, state.manifest_checksum(file_name)}
    if sha256(current) in known:
        path.write_text(content, encoding="utf-8")
        state.record_manifest(file_name, content)
        return f"refreshed {file_name}"
    new_path = root / f"{file_name}.new"
    new_path.write_text(content, encoding="utf-8")
    return (
        f"{file_name} has edits of yours, so it was left alone; the refreshed version is "
        f"in {new_path.name} (compare: diff -u {file_name} {new_path.name})"
    )


def find_program(*names: str) -> str | None:
    """The first of `names` found on PATH."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def run_step(step: Step, *, cwd: Path, timeout: float = 1800) -> str:
    """Run one planned command; return its output or raise StepError with it."""
    try:
        result = subprocess.run(  # noqa: S603 - the argv is the plan the user was shown
            list(step.argv),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise StepError(step, 127, str(exc)) from None
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout if isinstance(exc.stdout, str) else ""
        raise StepError(step, 124, f"{output}\n(no answer within {timeout:.0f} s)") from None
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise StepError(step, result.returncode, output)
    return output


class Deployer(ABC):
    """A deploy target: its prerequisites, manifest, plan and action."""

    name: ClassVar[str]
    description: ClassVar[str]
    manifest_file: ClassVar[str | None] = None

    def __init__(
        self,
        project: Project,
        *,
        app: str | None = None,
        region: str | None = None,
        template_region: str | None = None,
    ) -> None:
        self.project = project
        self.app = app or app_name(project.slug)
        # The questionnaire's region, which the template rendered the manifest for.
        self.template_region = template_region
        self.region = region or template_region

    def prerequisites(self, *, execute: bool) -> list[Check]:
        """What must be there before `run`; with execute=False, before planning."""
        return []

    def manifest(self) -> str | None:
        """The manifest's content for this project, or None when the target has none."""
        return None

    def template_manifest(self) -> str | None:
        """The manifest as the template rendered it from the questionnaire's answers."""
        return None

    def plan(self) -> list[Step]:
        """The exact commands the target needs, in order."""
        return []

    def notes(self) -> list[str]:
        """What the user should know about the plan (settings left out, and why)."""
        return []

    @abstractmethod
    def run(self, say: Printer, state: DeployState, *, execute: bool) -> Outcome:
        """Carry out the target's action."""
