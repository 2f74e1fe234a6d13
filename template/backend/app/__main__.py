"""Run the API: `python -m app` (add `--reload` while developing).

HOST and PORT come from the settings (127.0.0.1:8000 by default); platforms such as
Render set PORT themselves.
"""

from __future__ import annotations

import argparse

import uvicorn

from app.core.config import get_settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m app", description="Run the API server.")
    parser.add_argument("--reload", action="store_true", help="restart on code changes")
    args = parser.parse_args()
    settings = get_settings()
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
