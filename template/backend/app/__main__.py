"""Run the API: `python -m app` (add `--reload` while developing).

HOST and PORT come from the environment (127.0.0.1:8000 by default); platforms such as
Render set PORT themselves.
"""

from __future__ import annotations

import argparse
import os

import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m app", description="Run the API server.")
    parser.add_argument("--reload", action="store_true", help="restart on code changes")
    args = parser.parse_args()
    uvicorn.run(
        "app.main:app",
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        reload=args.reload,
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
