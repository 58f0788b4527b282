"""The code's layers import one way, and no import cycle exists (function-level imports
included): what `make test` checks on every run.

    core  <-  deployments  <-  db (SQL only)  <-  schema, rules, views, catalog, validation
          <-  tasks, models (the actors)  <-  api  <-  builder, run, kuberay, local_cluster
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TIERS = {
    "serve_app.core": 0,
    "deployments": 1,
    "serve_app.db": 2,
    "serve_app.protocol": 3, "serve_app.rules": 3, "serve_app.views": 3, "serve_app.hub": 3,
    "serve_app.catalog": 3, "serve_app.validation": 3, "serve_app.inputs": 3,
    "serve_app.auth": 3, "serve_app.lora_repos": 3,
    "serve_app.tasks": 4, "serve_app.models": 4,
    "serve_app.api": 5,
    "serve_app.builder": 6, "serve_app.run": 6, "serve_app.kuberay": 6,
    "serve_app.local_cluster": 6,
}


def tier(module: str) -> int | None:
    if module == "serve_app":  # the package itself (empty): above everything it holds
        return 6
    for prefix, rank in sorted(TIERS.items(), key=lambda kv: -len(kv[0])):
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return None


def modules() -> dict[str, Path]:
    found = {}
    for top in ("serve_app", "deployments"):
        for path in (ROOT / top).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """Project modules a file imports, anywhere in it."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        out.update(n for n in names if n in known)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, set(mods)) - {name} for name, path in mods.items()}


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
