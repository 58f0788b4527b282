"""The code's layers import one way, no import cycle exists (function-level imports included),
and the ingress stays a small process: what `make test` checks on every run.

    core  <-  deployments  <-  db (SQL only)  <-  wire (schema, views)
          <-  registry, tasks (the actors)  <-  api  <-  builder, run  <-  cluster (tools)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("serve_app", "deployments", "cluster")

TIERS = {
    "serve_app.core": 0,
    "deployments": 1,
    "serve_app.db": 2,
    "serve_app.wire": 3,
    "serve_app.registry": 4, "serve_app.tasks": 4,
    "serve_app.api": 5,
    "serve_app.builder": 6, "serve_app.run": 6,
    "cluster": 7,
}
# What an ingress replica must never load: it is a small process that scales by the dozen.
ML_STACK = {"torch", "diffusers", "transformers", "peft"}
INGRESS = "serve_app.api.app"


def tier(module: str) -> int | None:
    if module == "serve_app":  # the package itself (empty): above everything it holds
        return TIERS["serve_app.builder"]
    for prefix, rank in sorted(TIERS.items(), key=lambda kv: -len(kv[0])):
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return None


def modules() -> dict[str, Path]:
    found = {}
    for top in PACKAGES:
        for path in (ROOT / top).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imported_names(tree: ast.AST, top_level_only: bool = False) -> list[str]:
    """Every module name an import statement names (and `from m import n` as m.n too); with
    top_level_only, only the statements that run when the module is imported (not those in a
    function's body)."""
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if top_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names.append(child.module)
                names.extend(f"{child.module}.{a.name}" for a in child.names)
            elif isinstance(child, ast.Import):
                names.extend(a.name for a in child.names)
            visit(child)

    visit(tree)
    return names


def graph(top_level_only: bool = False) -> dict[str, set[str]]:
    mods = modules()
    return {name: {n for n in imported_names(ast.parse(path.read_text()), top_level_only)
                   if n in mods} - {name}
            for name, path in mods.items()}


def test_every_module_has_a_layer():
    assert [m for m in graph() if tier(m) is None] == []


def test_no_import_runs_back_up_the_layers():
    upward = sorted(f"{m} -> {t}" for m, targets in graph().items() for t in targets
                    if tier(t) > tier(m))
    assert upward == []


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            # a package's __init__ importing its own modules is not a cycle between layers
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_below_the_api_nothing_knows_http():
    """FastAPI and Starlette are the API layer's: nothing below it imports them."""
    offenders = []
    for name, path in modules().items():
        if tier(name) < TIERS["serve_app.api"]:
            text = path.read_text()
            if "import fastapi" in text or "from fastapi" in text or "starlette" in text:
                offenders.append(name)
    assert offenders == []


def ingress_closure() -> dict[str, set[str]]:
    """The project modules importing the ingress application loads (the statements that run on
    import, followed from module to module), each with the other top-level packages it
    imports that way."""
    mods, edges = modules(), graph(top_level_only=True)
    seen, todo = {INGRESS}, [INGRESS]
    while todo:
        name = todo.pop()
        for parent in _packages_of(name):  # importing a.b.c runs a/__init__ and a/b/__init__
            if parent in mods and parent not in seen:
                seen.add(parent)
                todo.append(parent)
        for nxt in edges[name] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return {name: {n.split(".")[0] for n in imported_names(
        ast.parse(mods[name].read_text()), top_level_only=True)} for name in seen}


def _packages_of(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def test_the_ingress_import_closure_holds_no_ml_stack():
    closure = ingress_closure()
    assert "serve_app.api.app" in closure and "serve_app.api.resolve" in closure
    offenders = {name: sorted(tops & ML_STACK) for name, tops in closure.items()
                 if tops & ML_STACK}
    assert offenders == {}
    # the model side's heavy modules are not even in it
    assert not {"deployments.server", "deployments.loading", "deployments.adapters.cache",
                "deployments.adapters.tiny", "deployments.adapters.convert"} & set(closure)


def test_importing_the_ingress_loads_no_ml_stack():
    """What really runs: a fresh interpreter imports the ingress application and its routes."""
    code = ("import sys, serve_app.api.app; "
            f"print(sorted(m for m in {sorted(ML_STACK)!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_unit_tests_are_named_after_the_module_they_test():
    """tests/unit mirrors the code: tests/unit/<package>/test_<module>.py tests
    <package>/<module>.py (this file and test_docs.py check the project as a whole)."""
    unit = ROOT / "tests" / "unit"
    strays = []
    for test in unit.rglob("test_*.py"):
        relative = test.relative_to(unit)
        if len(relative.parts) == 1:
            continue
        module = ROOT / relative.parent / f"{test.stem.removeprefix('test_')}.py"
        if not module.exists():
            strays.append(str(relative))
    assert sorted(p.name for p in unit.glob("test_*.py")) == ["test_docs.py", "test_layers.py"]
    assert strays == []
