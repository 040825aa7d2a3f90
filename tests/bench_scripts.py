"""Load a script from `bench/` or `experiments/` as a module, for tests of its pure parts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def load_script(path: str | Path) -> ModuleType:
    """The script at `path` (absolute, or relative to the repository root), executed once. It is
    in `sys.modules` only while it executes, which is when its dataclasses look their module up."""
    path = ROOT / path
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def load_bench(name: str) -> ModuleType:
    """`bench/<name>.py`, loaded by `load_script`."""
    return load_script(BENCH / f"{name}.py")
