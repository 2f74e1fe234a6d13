"""Run the API: `python -m app` (add `--reload` while developing).

HOST and PORT come from the settings (127.0.0.1:8000 by default); platforms such as
Render set PORT themselves.
"""

from __future__ import annotations

import argparse
import gc

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


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m app", description="Run the API server.")
    parser.add_argument("--reload", action="store_true", help="restart on code changes")
    args = parser.parse_args()
    settings = get_settings()
    if not args.reload:
        tune_garbage_collection()
    uvicorn.run(
        "app.main:app",
        host=settings.HOST,
        port=settings.PORT,
        reload=args.reload,
        # The client address is decided by app.core.proxy, from settings, alone.
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
