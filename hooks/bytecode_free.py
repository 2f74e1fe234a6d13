"""Importing the Python code the template ships, without writing bytecode beside it.

The template renders fly.toml and render.yaml by calling its own tools/deployers (see
extensions/context.py), and post_copy.py writes .env with the new project's
tools/envfile.py. Python would cache their bytecode in a __pycache__ next to the source:
in a template checkout Copier would copy it into the project, and in a new project it
would be an untracked file. Both callers share this loader.

Only the standard library is used: this runs under the Python that runs Copier.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def import_path(path: Path) -> ModuleType:
    """Import the module file or the package directory at `path`, writing no bytecode.

    `copier update` renders the old and the new template version in one process, each
    from its own checkout: the module is registered under a name unique to its path so
    that one version's modules never stand in for the other's.
    """
    name = f"dayone_{path.stem}_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    if name in sys.modules:
        return sys.modules[name]
    if path.is_dir():
        spec = importlib.util.spec_from_file_location(
            name, path / "__init__.py", submodule_search_locations=[str(path)]
        )
    else:
        spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    # A package's modules find each other (`from .base import ...`) through this entry.
    sys.modules[name] = module
    writes_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = writes_bytecode
    return module
