"""The benchmarks: `uv run python bench/run.py` from the template repository.

It renders the template with the default answers into a temporary folder, installs the
generated project's environment, then runs bench/measure.py in that environment, which
starts the real processes (the API under uvicorn, the RQ worker) against services on
loopback and prints what it measured. Figures are printed as a table and written to
bench/results.json. Nothing here is part of the test suite's pass or fail.

Needs: Python 3.11+, uv (installed with the template's dependencies), Redis on
127.0.0.1:6379 (database 14 is emptied) for the job benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from copier import run_copy
from uv import find_uv_bin

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results.json"


def render(destination: Path) -> float:
    started = time.perf_counter()
    run_copy(
        str(TEMPLATE_DIR),
        destination,
        data={"author_name": "Bench", "author_email": "bench@example.com", "init_git": False},
        defaults=True,
        unsafe=True,
        quiet=True,
        vcs_ref="HEAD",
    )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="run only these measurements (see measure.py)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated project")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="dayone-bench-"))
    project = workdir / "project"
    try:
        print(f"Rendering the template into {project} ...", flush=True)
        render(project)
        # Two environments: the app's processes run as the Docker image installs them
        # (no dev dependencies); the measuring side needs moto, aiosmtpd and httpx.
        for name, extra in ((".venv", []), (".venv-app", ["--no-dev"])):
            subprocess.run(
                [find_uv_bin(), "sync", "--quiet", *extra, "--directory", str(project / "backend")],
                env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(project / "backend" / name)},
                check=True,
            )
        python = project / "backend" / ".venv" / "bin" / "python"
        command = [str(python), str(Path(__file__).with_name("measure.py")), str(project)]
        if args.only:
            command += ["--only", *args.only]
        measured = subprocess.run(command, capture_output=True, text=True, check=False)
        sys.stderr.write(measured.stderr)
        if measured.returncode != 0:
            print(f"measure.py failed with exit code {measured.returncode}", file=sys.stderr)
            return measured.returncode
        results = json.loads(measured.stdout)
    finally:
        if args.keep:
            print(f"The project stays in {project}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    width = max(len(name) for name in results)
    print(f"\n{'measurement'.ljust(width)}  value")
    for name, result in results.items():
        print(f"{name.ljust(width)}  {result['value']:g} {result['unit']}  ({result['how']})")
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(TEMPLATE_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
