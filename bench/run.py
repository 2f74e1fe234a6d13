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


def clone_template(destination: Path, ref: str) -> Path:
    """A clone of the template at `ref` (a commit, a tag): uncommitted changes stay out."""
    subprocess.run(
        ["git", "clone", "--quiet", str(TEMPLATE_DIR), str(destination)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["git", "checkout", "--quiet", "-B", "bench", ref],
        cwd=destination,
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
                    # The commit being measured, not the newest release tag.
                    "--vcs-ref",
                    "HEAD",
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
        updates.append(
            timed([*copier, "update", "--trust", "--defaults", "--vcs-ref", "HEAD"], project)
        )
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
    parser.add_argument(
        "--ref",
        default="HEAD",
        help="the template commit to measure (default HEAD), with this checkout's measure.py: "
        "an earlier one gives the figures from before a change",
    )
    parser.add_argument(
        "--table",
        action="store_true",
        help="measure nothing: write README.md's table from bench/results.json",
    )
    args = parser.parse_args()
    if args.table:
        write_readme_table()
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="dayone-bench-"))
    project = workdir / "project"
    results: dict[str, dict[str, object]] = {}
    only = set(args.only or [])
    run_measure = not args.only or bool(only - {MEASURED_HERE})
    try:
        template = clone_template(workdir / "template", args.ref)
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
    # A partial run (--only) replaces its own figures and keeps the others.
    earlier = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    RESULTS.write_text(json.dumps({**earlier, **results}, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(TEMPLATE_DIR)}")
    write_readme_table()
    return 0


README = TEMPLATE_DIR / "README.md"
TABLE_START = (
    "<!-- bench table: written by `uv run python bench/run.py --table` from bench/results.json -->"
)
TABLE_END = "<!-- end of bench table -->"
# The README's rows: what was measured, its figures (results.json's values by name), the
# target.
README_ROWS = (
    (
        "`copier copy --trust --defaults`, median of 5",
        "{copier_copy_median} s",
        "",
    ),
    (
        "`copier update --trust --defaults` to a newer commit, median of 5",
        "{copier_update_median} s ({copier_update_to_copy}× the copy)",
        "≤ 2.5× the copy",
    ),
    (
        "bare FastAPI endpoint, one uvicorn worker, wrk -t1 -c32",
        (
            "{bare_requests_per_second} req/s, p50 {bare_p50} ms, p99 {bare_p99} ms; "
            "{bare_server_cpu_per_request} ms CPU per request"
        ),
        "the ceiling",
    ),
    (
        "GET /api/v1/users/me (JWT, PostgreSQL, production settings), same run",
        (
            "{users_me_requests_per_second} req/s ({users_me_share_of_bare} %), p50 {users_me_p50} "
            "ms, p99 {users_me_p99} ms; {users_me_server_cpu_per_request} ms CPU per request; "
            "{users_me_statements} statement"
        ),
        "≥ 20 %, p99 < 50 ms",
    ),
    (
        "GET /api/v1/users?limit=50 as the owner, same run",
        (
            "{users_list_requests_per_second} req/s ({users_list_share_of_bare} %), p99 "
            "{users_list_p99} ms; {users_list_server_cpu_per_request} ms CPU; "
            "{users_list_statements} statements"
        ),
        "≥ 10 %",
    ),
    (
        "GET /api/v1/organizations/{org_id}/files?limit=50 (50 files), same run",
        (
            "{files_list_requests_per_second} req/s ({files_list_share_of_bare} %), p99 "
            "{files_list_p99} ms; {files_list_server_cpu_per_request} ms CPU; "
            "{files_list_statements} statements"
        ),
        "≥ 10 %",
    ),
    (
        "GET /api/v1/organizations/{org_id} with an owner API key, next to the owner's JWT, same run",
        (
            "key {org_key_requests_per_second} req/s, p99 {org_key_p99} ms, "
            "{org_key_server_cpu_per_request} ms CPU, {org_key_statements} statements; JWT "
            "{org_jwt_requests_per_second} req/s, p99 {org_jwt_p99} ms, "
            "{org_jwt_server_cpu_per_request} ms CPU, {org_jwt_statements} statements; "
            "key/JWT {org_key_to_jwt} %"
        ),
        "key ≥ 80 % of the JWT",
    ),
    (
        "GET /api/v1/users/me with tracing off, then on (every span exported over OTLP/HTTP"
        " to a receiver on this machine), same run",
        (
            "off {users_me_untraced_requests_per_second} req/s, p99 {users_me_untraced_p99} ms, "
            "{users_me_untraced_server_cpu_per_request} ms CPU; on "
            "{users_me_traced_requests_per_second} req/s, p99 {users_me_traced_p99} ms, "
            "{users_me_traced_server_cpu_per_request} ms CPU; on/off {users_me_traced_to_untraced} %"
        ),
        "",
    ),
    (
        "login p50 / p99 (Argon2id m=19 MiB t=2 p=1, OWASP's minimum; 50 in a row)",
        "{login_p50} ms / {login_p99} ms",
        "p50 < 100 ms",
    ),
    ("API resident memory after start-up and a login", "{api_rss_before_upload} MiB", ""),
    (
        "peak while a 512 MiB upload streams to S3 and is read back",
        "{upload_512mib_peak_rss} MiB (+{upload_512mib_rss_growth} MiB)",
        "growth ≤ 32 MiB",
    ),
    (
        "request-verify → message at the SMTP server, via Redis and the worker (median of 20)",
        "{request_verify_to_smtp_median} ms",
        "",
    ),
    (
        "no-op job, enqueue → result, one worker (median / p99 of 50)",
        "{job_latency_p50} ms / {job_latency_p99} ms",
        "",
    ),
    ("no-op jobs, 500 at once, one worker", "{jobs_per_second} jobs/s", ""),
    (
        "one worker on a backlog of 300 (PostgreSQL, moto's S3, aiosmtpd): no-op",
        "{worker_noop_per_second} jobs/s",
        "the ceiling",
    ),
    (
        "`process_file` of a 64 KiB file, same worker and run",
        "{worker_process_file_per_second} jobs/s ({worker_process_file_to_noop} % of the no-op)",
        "≥ 50 % of the no-op",
    ),
    (
        "`send_email` through SMTP, same worker and run",
        "{worker_send_email_per_second} jobs/s ({worker_send_email_to_noop} % of the no-op)",
        "",
    ),
)


def readme_table(results: dict[str, dict[str, object]]) -> str:
    values = {name: result["value"] for name, result in results.items()}
    lines = ["| measurement | value | target |", "|---|---|---|"]
    for what, figures, target in README_ROWS:
        try:
            value = figures.format_map(values)
        except KeyError:
            value = "not measured yet"
        lines.append(f"| {what} | {value} | {target} |")
    return "\n".join(lines)


def write_readme_table() -> None:
    """The README's figures table, written again from bench/results.json."""
    results = json.loads(RESULTS.read_text())
    readme = README.read_text(encoding="utf-8")
    before, found, rest = readme.partition(TABLE_START)
    _table, found_end, after = rest.partition(TABLE_END)
    if not (found and found_end):
        raise SystemExit(f"README.md has no {TABLE_START!r} ... {TABLE_END!r} block")
    README.write_text(f"{before}{TABLE_START}\n{readme_table(results)}\n{TABLE_END}{after}")
    print(f"the table in {README.relative_to(TEMPLATE_DIR)} is written from the results")


if __name__ == "__main__":
    sys.exit(main())
