"""The README's config examples are valid config."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from serve_app.core.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_readme_config_examples_validate():
    readme = (ROOT / "README.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", readme, re.S)]
    serve_configs = [b for b in blocks if "applications" in b]
    assert len(serve_configs) == 1 and len(blocks) >= 2
    app = serve_configs[0]["applications"][0]
    assert app["import_path"] == "serve_app.builder:build_app"
    cfg = load_config(app["args"], environ={})
    assert cfg.families["flux"].num_gpus == 1 and cfg.storage.retention_days == 30
    for snippet in (b for b in blocks if "applications" not in b):  # fragments of args
        load_config(snippet, environ={})
