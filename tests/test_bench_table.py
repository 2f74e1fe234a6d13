"""README.md's figures are bench/results.json's: the table is written from that file."""

from __future__ import annotations

import importlib.util
import json
from types import ModuleType

from template_tools import TEMPLATE_DIR


def bench_runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", TEMPLATE_DIR / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_table_is_written_from_the_results() -> None:
    runner = bench_runner()
    results = json.loads((TEMPLATE_DIR / "bench" / "results.json").read_text(encoding="utf-8"))
    readme = (TEMPLATE_DIR / "README.md").read_text(encoding="utf-8")
    table = readme.split(runner.TABLE_START + "\n", 1)[1].split("\n" + runner.TABLE_END, 1)[0]
    assert table == runner.readme_table(results)
    # Every row has its figures: nothing in the table is left unmeasured.
    assert "not measured yet" not in table
