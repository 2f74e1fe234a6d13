"""What the API process costs as it starts: the libraries it loads, and how much of what
start-up built the garbage collector still walks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BACKEND = Path(__file__).resolve().parents[1]


def run_python(program: str) -> str:
    """`program` in a fresh interpreter of this environment, from backend/; its output."""
    result = subprocess.run(  # noqa: S603 - this interpreter, a fixed program
        [sys.executable, "-c", program],
        cwd=BACKEND,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def test_an_app_on_local_storage_does_not_load_boto3() -> None:
    # boto3 costs the API about 10 MiB of memory: only S3 storage imports it.
    program = (
        "import sys\n"
        "from app.core.config import Settings\n"
        "from app.main import create_app\n"
        "from app.services.storage_service import create_storage\n"
        "settings = Settings(_env_file=None, STORAGE_BACKEND='local')\n"
        "create_app(settings)\n"
        "create_storage(settings)\n"
        "print(sorted(name for name in ('boto3', 'botocore') if name in sys.modules))\n"
    )
    assert run_python(program).strip() == "[]"


def test_the_server_leaves_what_start_up_built_out_of_garbage_collection() -> None:
    program = (
        "import gc\n"
        "from app.__main__ import GC_THRESHOLDS, tune_garbage_collection\n"
        "tune_garbage_collection()\n"
        "print(gc.get_freeze_count() > 10_000, gc.get_threshold() == GC_THRESHOLDS)\n"
    )
    assert run_python(program).split() == ["True", "True"]
