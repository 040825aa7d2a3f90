"""The import rules of docs/design.md, 'Layers': a module imports only from lower layers; siblings
stay apart.

    layer 0  config                 stdlib only
    layer 1  model, data            config            (model and data never import each other)
    layer 2  checkpoint             model, data, config
    layer 3  train, infer           model, data, checkpoint, config   (never each other)
    layer 4  eval, serve            infer, data, checkpoint, model, config   (never train, never each other)
    layer 5  world                  train, eval, infer, data, model, checkpoint, config
    layer 6  cli                    anything; nothing imports cli
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "llava15"

ALLOWED = {
    "config": set(),
    "model": {"config"},
    "data": {"config"},
    "checkpoint": {"model", "data", "config"},
    "train": {"model", "data", "checkpoint", "config"},
    "infer": {"model", "data", "checkpoint", "config"},
    "eval": {"infer", "data", "checkpoint", "model", "config"},
    "serve": {"infer", "data", "checkpoint", "model", "config"},
    "world": {"train", "eval", "infer", "data", "model", "checkpoint", "config"},
    "cli": {"config", "model", "data", "checkpoint", "train", "infer", "eval", "serve", "world"},
}


def area_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.stem != "__init__" else "__init__"


def imported_areas(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return {n.split(".")[1] for n in names if n.startswith("llava15.") and len(n.split(".")) > 1}


def test_every_module_respects_the_layers():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        area = area_of(path)
        if area in ("__init__", "__main__"):
            continue
        if area not in ALLOWED:
            problems.append(f"{path.relative_to(PACKAGE)}: area {area!r} has no layer in the rules")
            continue
        for other in imported_areas(path) - {area}:
            if other not in ALLOWED[area]:
                problems.append(f"{path.relative_to(PACKAGE)} imports llava15.{other}")
    assert not problems, "\n".join(problems)


def test_config_imports_only_the_standard_library():
    tree = ast.parse((PACKAGE / "config.py").read_text(encoding="utf-8"))
    third_party = {"torch", "numpy", "PIL", "transformers", "safetensors"}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert not any(n.split(".")[0] in third_party for n in names), names


def test_the_package_imports_nothing_from_the_repository_folders():
    """`bench/`, `experiments/` and `tests/` use the package; the package never imports them."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            problems += [f"{path.relative_to(PACKAGE)} imports {n}" for n in names
                         if n.split(".")[0] in ("bench", "experiments", "tests")]
    assert not problems, "\n".join(problems)


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The package modules `path` imports (anywhere in the file, deferred imports included):
    `from a.b import c` counts as `a.b.c` when that is a module, else as `a.b`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in known:
                    found.add(full)
                elif node.module in known:
                    found.add(node.module)
    return found


def cycles_within_areas(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles whose modules all lie in one area (package `__init__` modules, which
    re-export their area, are left out: importing a submodule runs them by design)."""
    def area(module: str) -> str:
        return module.split(".")[1] if module.count(".") >= 1 else ""

    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if area(nxt) != area(node) or nxt not in graph:
                continue
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_cycle_inside_an_area():
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(paths)
    graph = {m: imported_modules(p, known) - {m} for m, p in paths.items()
             if not p.name == "__init__.py"}
    assert cycles_within_areas(graph) == []


def test_a_planted_cycle_is_found():
    graph = {"llava15.world.a": {"llava15.world.b"}, "llava15.world.b": {"llava15.world.a"},
             "llava15.eval.c": {"llava15.infer.d"}, "llava15.infer.d": set()}
    assert cycles_within_areas(graph) == [["llava15.world.a", "llava15.world.b", "llava15.world.a"]]
