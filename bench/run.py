"""The benchmarks: `uv run python bench/run.py` from the template repository.

It renders the template (a clone of its committed HEAD) with the default answers into a
temporary folder, installs the generated project's environment, then runs
bench/measure.py in that environment, which starts the real processes (the API under uvicorn, the RQ worker) against services on
loopback and prints what it measured. Figures are printed as a table and written to
bench/results.json. Nothing here is part of the test suite's pass or fail.

It also times Copier itself, as a user runs it: `copier copy --trust --defaults` of a
clone of the committed template, and `copier update --trust --defaults` of that project
to a newer template commit (made in the clone).

Needs: Python 3.11+, uv (installed with the template's dependencies), git, Redis on
127.0.0.1:6379 (database 14 is emptied) for the job benchmarks, PostgreSQL on
127.0.0.1:5432 (user postgres, trust auth; a database is created and dropped) and its
`psql` client for the requests/s benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from copier import run_copy
from uv import find_uv_bin

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results.json"
BENCH_ANSWERS = ("-d", "author_name=Bench", "-d", "author_email=bench@example.com")
COPIER_RUNS = 5
# The measurements of measure.py, and Copier's own, which run.py times itself.
MEASURED_HERE = "copier"


def clone_template(destination: Path) -> Path:
    """A clone of the template's committed HEAD: uncommitted changes stay out of it."""
    subprocess.run(
        ["git", "clone", "--quiet", str(TEMPLATE_DIR), str(destination)],
        check=True,
        capture_output=True,
    )
    return destination


def render(template: Path, destination: Path) -> None:
    run_copy(
        str(template),
        destination,
        data={"author_name": "Bench", "author_email": "bench@example.com", "init_git": False},
        defaults=True,
        unsafe=True,
        quiet=True,
        vcs_ref="HEAD",
    )


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Bench", "-c", "user.email=bench@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def measure_copier(template: Path, workdir: Path) -> dict[str, dict[str, object]]:
    """`copier copy` and `copier update` as a user runs them, each the median of five.

    `template` gets one more commit, the newer version the project is updated to.
    """
    copier = [sys.executable, "-m", "copier"]
    copies = []
    for number in range(COPIER_RUNS):
        destination = workdir / f"copy-{number}"
        copies.append(
            timed(
                [
                    *copier,
                    "copy",
                    "--trust",
                    "--defaults",
                    *BENCH_ANSWERS,
                    str(template),
                    str(destination),
                ],
                workdir,
            )
        )
    # A newer template version: one more commit, touching a rendered file.
    readme = template / "template" / "README.md.jinja"
    readme.write_text(readme.read_text() + "\nA line from a newer template version.\n")
    git(template, "commit", "--quiet", "--all", "-m", "bench: a newer template version")
    project = workdir / "copy-0"
    updates = []
    for _ in range(COPIER_RUNS):
        updates.append(timed([*copier, "update", "--trust", "--defaults"], project))
        assert "A line from a newer template version." in (project / "README.md").read_text()
        # Back to the project as copied, for the next update.
        git(project, "reset", "--quiet", "--hard")
        git(project, "clean", "--quiet", "-fd")
    copy, update = statistics.median(copies), statistics.median(updates)
    return {
        "copier_copy_median": {
            "value": round(copy, 2),
            "unit": "s",
            "how": f"`copier copy --trust --defaults` of a local clone, with the post-copy task (.env, git init, first commit); median of {COPIER_RUNS}",
        },
        "copier_update_median": {
            "value": round(update, 2),
            "unit": "s",
            "how": f"`copier update --trust --defaults` of that project to a newer template commit; median of {COPIER_RUNS}",
        },
        "copier_update_to_copy": {
            "value": round(update / copy, 2),
            "unit": "x",
            "how": "the update's median over the copy's",
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="run only these: copier, or the names in measure.py's MEASUREMENTS",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated project")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="dayone-bench-"))
    project = workdir / "project"
    results: dict[str, dict[str, object]] = {}
    only = set(args.only or [])
    run_measure = not args.only or bool(only - {MEASURED_HERE})
    try:
        template = clone_template(workdir / "template")
        if run_measure:
            print(f"Rendering the template into {project} ...", flush=True)
            render(template, project)
        if not args.only or MEASURED_HERE in only:
            print("Timing copier copy and copier update ...", flush=True)
            results.update(measure_copier(template, workdir))
        if not run_measure:
            return report(results)
        # Two environments: the app's processes run as the Docker image installs them
        # (the locked versions, no dev dependencies); the measuring side needs moto,
        # aiosmtpd and httpx.
        for name, extra in ((".venv", []), (".venv-app", ["--no-dev"])):
            subprocess.run(
                [
                    find_uv_bin(),
                    "sync",
                    "--quiet",
                    "--locked",
                    *extra,
                    "--directory",
                    str(project / "backend"),
                ],
                env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(project / "backend" / name)},
                check=True,
            )
        python = project / "backend" / ".venv" / "bin" / "python"
        command = [str(python), str(Path(__file__).with_name("measure.py")), str(project)]
        if args.only:
            command += ["--only", *sorted(only - {MEASURED_HERE})]
        measured = subprocess.run(command, capture_output=True, text=True, check=False)
        sys.stderr.write(measured.stderr)
        if measured.returncode != 0:
            print(f"measure.py failed with exit code {measured.returncode}", file=sys.stderr)
            return measured.returncode
        results.update(json.loads(measured.stdout))
    finally:
        if args.keep:
            print(f"The project stays in {project}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return report(results)


def report(results: dict[str, dict[str, object]]) -> int:
    width = max(len(name) for name in results)
    print(f"\n{'measurement'.ljust(width)}  value")
    for name, result in results.items():
        print(f"{name.ljust(width)}  {result['value']:g} {result['unit']}  ({result['how']})")
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(TEMPLATE_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
