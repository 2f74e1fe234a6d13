"""The day-one command: from a fresh checkout to an app that runs, is shared or is deployed.

    uv run --project backend python -m tools.day_one                    # the project's target
    uv run --project backend python -m tools.day_one --target tunnel    # a public URL
    uv run --project backend python -m tools.day_one --target fly --execute
    uv run --project backend python -m tools.day_one status             # what it did last

It checks the target's prerequisites, creates .env when missing (with a fresh
SECRET_KEY), migrates the database, creates the first owner account, writes the target's
manifest, prints the exact commands of the target's plan and carries out its action. Run
it again at any time: what is already in place is left as it is, and the summary says so.

Every question has a flag or an environment variable, so it also runs unattended
(`--non-interactive`, or no terminal, or CI set): the owner's password comes from
OWNER_PASSWORD, the target from --target or DEPLOY_TARGET.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from tools import project
from tools.deployers import DEPLOYERS, Deployer, fly, render
from tools.deployers.base import (
    STATE_FILE,
    DeployState,
    Outcome,
    Project,
    StepError,
    find_program,
    sha256,
    write_manifest,
)
from tools.deployers.fly import FlyDeployer
from tools.deployers.local import stop
from tools.deployers.render import RenderDeployer
from tools.envfile import create_env, read_settings

ROOT = Path(__file__).resolve().parents[1]


class DayOneError(Exception):
    """A problem the user can fix; printed as a sentence, without a traceback."""


@dataclass
class Report:
    """What this run changed and what it found already in place."""

    changed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def say(self, message: str) -> None:
        print(f"  {message}", flush=True)

    def section(self, title: str) -> None:
        print(f"\n==> {title}", flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.day_one",
        description="Set the project up and run, share or deploy it.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["up", "status"],
        default="up",
        help="up (the default): set up and carry out the target; status: what the last run did",
    )
    parser.add_argument(
        "--target",
        choices=sorted(DEPLOYERS),
        default=None,
        help=f"where the app goes (default: DEPLOY_TARGET, else {project.DEPLOY_TARGET!r}, "
        "the questionnaire's answer)",
    )
    parser.add_argument(
        "--execute",
        action="store_true",
        default=os.environ.get("DAY_ONE_EXECUTE") == "1",
        help="fly: run the printed flyctl commands (needs flyctl and a login); "
        "also DAY_ONE_EXECUTE=1",
    )
    parser.add_argument(
        "--no-start",
        action="store_true",
        help="local, tunnel: set everything up but do not start the API",
    )
    parser.add_argument(
        "--fallback-tunnel",
        action="store_true",
        default=os.environ.get("DAY_ONE_FALLBACK_TUNNEL") == "1",
        help="when a cloud target's prerequisites are missing, share the app through a "
        "tunnel instead (also DAY_ONE_FALLBACK_TUNNEL=1)",
    )
    parser.add_argument("--port", type=int, help="local, tunnel: the API's port (default: PORT)")
    parser.add_argument("--app", help="fly: the app name (default: from the project slug)")
    parser.add_argument("--region", help="fly, render: the region (default: the questionnaire's)")
    parser.add_argument(
        "--owner-email", help="the first owner's email (default: OWNER_EMAIL in .env)"
    )
    parser.add_argument(
        "--non-interactive",
        action="store_true",
        help="never ask; take answers from flags and the environment (implied without a "
        "terminal or with CI set)",
    )
    return parser.parse_args(argv)


def choose_target(args: argparse.Namespace) -> tuple[str, str]:
    """The target and where the choice came from."""
    if args.target:
        return args.target, "--target"
    from_env = os.environ.get("DEPLOY_TARGET", "").strip()
    if from_env:
        if from_env not in DEPLOYERS:
            raise DayOneError(
                f"DEPLOY_TARGET={from_env!r} is not a target; use one of {', '.join(DEPLOYERS)}."
            )
        return from_env, "DEPLOY_TARGET"
    return project.DEPLOY_TARGET, "the questionnaire's answer"


def check_names(target: str, args: argparse.Namespace) -> None:
    """Refuse a bad --app or --region before anything is written."""
    if target == "fly" and args.region and not fly.REGION_CODE.match(args.region):
        raise DayOneError(
            f"--region {args.region!r} is not a Fly.io region code; use three lowercase "
            "letters such as iad or ams (`flyctl platform regions` lists them)."
        )
    if target == "fly" and args.app and not fly.APP_NAME.match(args.app):
        raise DayOneError(
            f"--app {args.app!r} is not a valid Fly app name: lowercase letters, digits and "
            "hyphens, at most 63, starting and ending with a letter or digit."
        )
    if target == "render" and args.region and args.region not in render.REGIONS:
        raise DayOneError(
            f"--region {args.region!r} is not a Render region; use one of "
            f"{', '.join(render.REGIONS)}."
        )


def make_deployer(target: str, proj: Project, args: argparse.Namespace) -> Deployer:
    if target == "fly":
        return FlyDeployer(
            proj, app=args.app, region=args.region, template_region=project.FLY_REGION
        )
    if target == "render":
        return RenderDeployer(proj, region=args.region, template_region=project.RENDER_REGION)
    return DEPLOYERS[target](proj)


def app_command(
    root: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m app.cli ...` in the backend, with the app's own settings."""
    return subprocess.run(  # noqa: S603 - this interpreter, fixed module
        [sys.executable, "-m", "app.cli", *args],
        cwd=root / "backend",
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stdout + result.stderr).strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


def migrate(root: Path, report: Report) -> None:
    result = app_command(root, "migrate")
    if result.returncode != 0:
        raise DayOneError(f"the migrations failed: {last_line(result)}")
    message = result.stdout.strip()
    report.say(message)
    (report.kept if "nothing to do" in message else report.changed).append(message)


def ask_password(email: str) -> str:
    import questionary  # only interactive runs need a prompt library

    while True:
        password = questionary.password(f"Password for the owner {email}:").unsafe_ask()
        again = questionary.password("The same password again:").unsafe_ask()
        if password == again:
            return str(password)
        print("  The two differ; once more.")


def existing_owner(root: Path) -> str | None:
    """The email of an active owner, or None, as the app's CLI tells it."""
    found = app_command(root, "owner", "--json")
    try:
        owner = json.loads(found.stdout)["owner"] if found.returncode == 0 else False
    except (ValueError, KeyError, TypeError):
        owner = False
    if owner is None or isinstance(owner, str):
        return owner
    raise DayOneError(f"could not look for an owner: {last_line(found)}")


def ensure_owner(root: Path, report: Report, email: str | None, *, interactive: bool) -> None:
    password = os.environ.get("OWNER_PASSWORD", "")
    options = ["--email", email] if email else []
    if not password:
        owner = existing_owner(root)
        if owner:
            message = f"The owner account exists ({owner}); left as it is."
            report.say(message)
            report.kept.append(message)
            return
        if not interactive:
            raise DayOneError(
                "there is no owner account yet and no terminal to ask for its password: "
                "set OWNER_PASSWORD (and OWNER_EMAIL or --owner-email) and run it again."
            )
        # The app's own rule, before the two password prompts rather than after them.
        checked = app_command(root, "check-email", *options)
        if checked.returncode != 0:
            raise DayOneError(f"the owner account was not created: {last_line(checked)}")
        password = ask_password(email or read_settings(root).get("OWNER_EMAIL", ""))
    # --if-none: an existing owner is left alone, whatever the password says.
    result = app_command(
        root, "create-owner", "--if-none", *options, env={"OWNER_PASSWORD": password}
    )
    if result.returncode != 0:
        raise DayOneError(f"the owner account was not created: {last_line(result)}")
    message = result.stdout.strip()
    report.say(message)
    (report.kept if "nothing to do" in message else report.changed).append(message)


def confirm(question: str, *, interactive: bool) -> bool:
    if not interactive:
        return False
    import questionary

    return bool(questionary.confirm(question, default=False).unsafe_ask())


def update_advice(root: Path, manifest: str, target: str) -> list[str]:
    """What to do so that a manifest day_one wrote never blocks `copier update`, which
    refuses a tree with untracked files: the exact commands, or nothing when none are
    needed (no git repository, or the files are tracked already)."""
    names = [name for name in (manifest, f"{manifest}.new") if (root / name).exists()]
    git = find_program("git")
    untracked: list[str] = []
    if git is not None:
        listed = subprocess.run(  # noqa: S603 - git from PATH, fixed arguments
            [git, "ls-files", "--others", "--exclude-standard", "--", *names],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        untracked = listed.stdout.split() if listed.returncode == 0 else []
    advice = []
    if manifest in untracked:
        advice.append(
            f"{manifest} is new and not in git yet; commit it before the next `copier update` "
            f"(which refuses untracked files): git add {manifest} && git commit -m 'Add {manifest}'"
        )
    if f"{manifest}.new" in untracked:
        advice.append(
            f"before the next `copier update`, take {manifest}.new into {manifest} or delete it"
        )
    if target != project.DEPLOY_TARGET:
        advice.append(
            f"the questionnaire's deploy target is {project.DEPLOY_TARGET}: update with "
            f"`-d deploy_target={target}` so that the template keeps {manifest} up to date"
        )
    return advice


def print_plan(deployer: Deployer, report: Report) -> None:
    steps = deployer.plan()
    if not steps:
        return
    report.section(f"Plan for {deployer.name}: {deployer.description}")
    for number, step in enumerate(steps, start=1):
        print(f"  {number}. {step.purpose}")
        if step.argv:
            print(f"       $ {step.shown()}")
    for note in deployer.notes():
        report.say(f"note: {note}")


def interrupt(_signal: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def wait_in_foreground(outcome: Outcome) -> int:
    """Keep the started processes running until Ctrl+C (or SIGTERM); then stop them."""
    print("\nRunning; press Ctrl+C to stop.", flush=True)
    try:
        while all(process.poll() is None for process in outcome.processes):
            time.sleep(0.5)
        ended = next(process for process in outcome.processes if process.poll() is not None)
        print(f"\nA process ended (exit status {ended.returncode}); stopping the others.")
        return 1
    except KeyboardInterrupt:
        print("\nStopping.", flush=True)
        return 0
    finally:
        stop(outcome.processes)


def up(args: argparse.Namespace, root: Path) -> int:
    interactive = sys.stdin.isatty() and not args.non_interactive and not os.environ.get("CI")
    report = Report()
    target, source = choose_target(args)
    check_names(target, args)
    print(f"Day one for {project.PROJECT_NAME}: target {target} (from {source})", flush=True)

    report.section("Settings")
    if create_env(root):
        report.say("Wrote .env from .env.template with a new SECRET_KEY (gitignored).")
        report.changed.append("wrote .env")
    else:
        report.say(".env exists; left as it is.")
        report.kept.append(".env exists")
    settings = read_settings(root)
    if args.port:
        settings["PORT"] = str(args.port)
    proj = Project(root, project.PROJECT_NAME, project.PROJECT_SLUG, settings)
    deployer = make_deployer(target, proj, args)
    state = DeployState(root)

    report.section("Prerequisites")
    execute = args.execute
    if target == "fly" and not execute and find_program("flyctl", "fly"):
        execute = confirm(
            "flyctl is installed: run the plan's commands now?", interactive=interactive
        )
    missing = []
    checks = deployer.prerequisites(execute=execute)
    if not checks:
        report.say("none needed for this step")
    for check in checks:
        report.say(f"{'ok' if check.ok else 'MISSING'}: {check.what}")
        if not check.ok:
            report.say(f"    fix: {check.fix}")
            missing.append(check)
    if missing and target in {"local", "tunnel"}:
        raise DayOneError(f"{len(missing)} prerequisite(s) missing; the fixes are listed above.")

    report.section("Database")
    migrate(root, report)
    report.section("First owner")
    ensure_owner(root, report, args.owner_email, interactive=interactive)

    if deployer.manifest_file:
        report.section("Manifest")
        content = deployer.manifest()
        pristine = deployer.template_manifest()
        ours = {sha256(pristine)} if pristine else set()
        if content is not None:
            message = write_manifest(root, deployer.manifest_file, content, state, ours=ours)
            report.say(message)
            (report.kept if "up to date" in message else report.changed).append(message)
            for line in update_advice(root, deployer.manifest_file, target):
                report.say(line)
    print_plan(deployer, report)

    if missing:
        report.section("Not run")
        report.say(
            f"{target}'s prerequisites are missing (listed above); the plan runs once they "
            "are in place."
        )
        fallback = args.fallback_tunnel or confirm(
            "Share the app from this machine through a tunnel meanwhile?",
            interactive=interactive,
        )
        if not fallback:
            return finish(report, state, target, deployer, Outcome(), status=1 if execute else 0)
        target = "tunnel"
        deployer = make_deployer(target, proj, args)
        print_plan(deployer, report)

    if target in {"local", "tunnel"} and args.no_start:
        report.say("--no-start: the API was not started.")
        return finish(report, state, target, deployer, Outcome(), status=0)
    report.section(f"Running the {target} target")
    try:
        outcome = deployer.run(report.say, state, execute=execute)
    except StepError as exc:
        report.say(f"FAILED: {exc}")
        print(exc.output.rstrip(), file=sys.stderr)
        return finish(report, state, target, deployer, Outcome(), status=1)
    except RuntimeError as exc:
        raise DayOneError(str(exc)) from None
    report.changed.extend(outcome.done)
    code = finish(report, state, target, deployer, outcome, status=0)
    if outcome.processes:
        return wait_in_foreground(outcome)
    return code


def finish(
    report: Report,
    state: DeployState,
    target: str,
    deployer: Deployer,
    outcome: Outcome,
    *,
    status: int,
) -> int:
    details: dict[str, Any] = {"app": deployer.app, "urls": outcome.urls}
    if deployer.region:
        details["region"] = deployer.region
    state.record_run(target, **details)
    state.save()
    report.section("Summary")
    if report.changed:
        for line in report.changed:
            print(f"  changed: {line}")
    else:
        print("  Nothing needed changing: everything was already set up.")
    for line in report.kept:
        print(f"  already in place: {line}")
    for name, url in outcome.urls.items():
        print(f"  {name}: {url}")
    print(f"  (recorded in {STATE_FILE}; `python -m tools.day_one status` shows it)")
    return status


def status(root: Path) -> int:
    state = DeployState(root)
    if not state.data:
        print(f"No day-one run recorded yet ({STATE_FILE} does not exist).")
        return 0
    data = state.data
    print(f"Last run: {data.get('last_run', 'unknown')}, target {data.get('target', 'unknown')}")
    for name, details in sorted(data.get("targets", {}).items()):
        print(f"\n{name}:")
        for key in ("app", "region"):
            if details.get(key):
                print(f"  {key}: {details[key]}")
        for label, url in details.get("urls", {}).items():
            print(f"  {label}: {url}")
        if details.get("done_steps"):
            print(f"  steps done: {', '.join(details['done_steps'])}")
    for file_name, checksum in sorted(data.get("manifests", {}).items()):
        path = root / file_name
        if not path.exists():
            verdict = "missing"
        elif sha256(path.read_text(encoding="utf-8")) == checksum:
            verdict = "as written by day_one"
        else:
            verdict = "edited since day_one wrote it (refreshes go to a .new file)"
        print(f"manifest {file_name}: {verdict}")
    return 0


def main(argv: Sequence[str] | None = None, root: Path = ROOT) -> int:
    args = parse_args(argv)
    # SIGTERM (a service manager, a CI runner) stops the API and worker as Ctrl+C does.
    signal.signal(signal.SIGTERM, interrupt)
    try:
        if args.command == "status":
            return status(root)
        return up(args, root)
    except DayOneError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
