"""The README is a front door and the docs follow the code: config examples validate, every
link resolves, the layout names every package."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from serve_app.core.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_config_examples_in_the_docs_validate():
    blocks = [yaml.safe_load(b) for page in PAGES
              for b in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S)]
    serve_configs = [b for b in blocks if "applications" in b]
    assert len(serve_configs) == 1 and len(blocks) >= 2
    app = serve_configs[0]["applications"][0]
    assert app["import_path"] == "serve_app.builder:build_app"
    cfg = load_config(app["args"], environ={})
    assert cfg.families["flux"].num_gpus == 1 and cfg.storage.retention_days == 30
    for snippet in (b for b in blocks if "applications" not in b):  # fragments of args
        load_config(snippet, environ={})


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert "make serve" in readme and "make test" in readme and "```mermaid" in readme


def test_every_link_in_the_readme_and_docs_resolves():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path = target.split("#", 1)[0]
            if path:
                assert (page.parent / path).exists(), f"{page.name}: {target}"


def test_the_layout_names_every_package():
    layout = (DOCS / "architecture.md").read_text().split("## Layout", 1)[1]
    layout = layout.split("\n## ", 1)[0]
    for top in ("serve_app", "deployments", "cluster", "loadtests", "tests"):
        for init in (ROOT / top).rglob("__init__.py"):
            package = init.parent.relative_to(ROOT).as_posix()
            # tests/unit mirrors the code (test_layers checks it): the layout says so once
            if "migrations" in package or package.startswith("tests/unit/"):
                continue
            assert f"{package}/" in layout, f"docs/architecture.md's Layout omits {package}/"
