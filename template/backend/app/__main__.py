"""Run the API: `python -m app` (add `--reload` while developing).

HOST and PORT come from the settings (127.0.0.1:8000 by default); platforms such as
Render set PORT themselves. WEB_CONCURRENCY server processes share the port, and with
METRICS_PORT set this process serves their Prometheus metrics, added up.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
from pathlib import Path

import uvicorn

from app.core.config import get_settings

# Objects a request makes are young: collect them after this many allocations rather than
# Python's default 700, and the older generations rarely.
GC_THRESHOLDS = (20_000, 20, 10)


def tune_garbage_collection() -> None:
    """Exempt what start-up built from garbage collection, and collect less often.

    The modules, classes and schemas the app imports are a few hundred thousand objects
    that live as long as the process; without this every full collection walks them all,
    which under load shows as a pause in the slowest requests (the 99th percentile).
    """
    import app.main  # noqa: F401 - built once here; uvicorn serves this very module

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def share_metrics_between_workers(workers: int) -> Path | None:
    """Have each server process write its metrics to files that this process adds up;
    the directory made for them, if one was.

    It must run before prometheus_client is first imported, which reads the variable
    then. A directory given in it is emptied: values of an earlier run would add up.
    """
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given is not None:
        Path(given).mkdir(parents=True, exist_ok=True)
        for leftover in Path(given).glob("*.db"):
            leftover.unlink()
        return None
    if workers == 1:
        return None
    made = Path(tempfile.mkdtemp(prefix="metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(made)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m app", description="Run the API server.")
    parser.add_argument("--reload", action="store_true", help="restart on code changes")
    args = parser.parse_args()
    settings = get_settings()
    workers = 1 if args.reload else settings.WEB_CONCURRENCY
    # Not under --reload, whose server runs in a child process of its own.
    metrics_port = None if args.reload else settings.METRICS_PORT
    if args.reload and settings.METRICS_PORT is not None:
        print("METRICS_PORT is not served under --reload", file=sys.stderr)
    made = share_metrics_between_workers(workers) if metrics_port is not None else None
    if not args.reload:
        tune_garbage_collection()
    if metrics_port is not None:
        from app.core.metrics import serve

        serve(settings, metrics_port)
    try:
        uvicorn.run(
            "app.main:app",
            host=settings.HOST,
            port=settings.PORT,
            workers=workers,
            reload=args.reload,
            # The client address is decided by app.core.proxy, from settings, alone.
            proxy_headers=False,
            # Logging is the app's (app/core/logging.py), its access line too.
            log_config=None,
            access_log=False,
        )
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


if __name__ == "__main__":
    main()
