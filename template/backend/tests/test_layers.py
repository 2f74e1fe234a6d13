"""The layer rule, checked on the import graph of app/ (every import, also those inside
functions): each module imports only from its own package and from lower layers, the
routes are imported by the app factory alone, and no import circle exists."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"

# Lower numbers are lower layers. Packages of one layer do not import each other.
LAYERS = {
    "app.core": 0,
    "app.models": 1,
    "app.schemas": 2,
    "app.services": 2,
    "app.api": 3,
    "app.worker": 3,
    "app.main": 4,
    # The command lines: `python -m app` serves app.main; app.cli builds it for openapi.
    "app.cli": 5,
    "app.__main__": 5,
}


def module_names() -> dict[str, Path]:
    names = {}
    for path in APP.rglob("*.py"):
        parts = path.relative_to(APP.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """The app modules `name` imports; `from package import module` counts as the module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
    return {module for module in found if module in modules and module != name}


def graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports(path, name, set(modules)) for name, path in modules.items()}


def layer(module: str) -> tuple[str, int] | None:
    for package, rank in LAYERS.items():
        if module == package or module.startswith(f"{package}."):
            return package, rank
    return None


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = sorted(name for name in module_names() if name != "app" and layer(name) is None)
    assert unplaced == [], f"add these to LAYERS: {unplaced}"


def test_imports_go_only_downward() -> None:
    upward = []
    for module, targets in graph().items():
        placed = layer(module)
        if placed is None:
            continue
        package, rank = placed
        for target in sorted(targets):
            target_package, target_rank = layer(target) or ("app", -1)
            if target_package != package and target_rank >= rank:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_only_the_app_factory_imports_the_routes() -> None:
    importers = sorted(
        f"{module} -> {target}"
        for module, targets in graph().items()
        if not module.startswith("app.api")
        for target in targets
        if target.startswith("app.api") and module != "app.main"
    )
    assert importers == []


def test_there_is_no_import_circle() -> None:
    edges = graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            pytest.fail("import circle: " + " -> ".join([*path[path.index(module) :], module]))
        if module in done:
            return
        for target in sorted(edges[module]):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(edges):
        visit(module, [])


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The graph is read from the code: an import written into a core module shows up."""
    source = APP / "core" / "clock.py"
    module = tmp_path / "clock.py"
    module.write_text(source.read_text() + "\nfrom app.api import deps\n")
    found = imports(module, "app.core.clock", set(module_names()))
    assert "app.api.deps" in found
    assert layer("app.api.deps") == ("app.api", 3)
    assert layer("app.core.clock") == ("app.core", 0)
