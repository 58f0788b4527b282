"""The README's config example is valid config."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from serve_app.core.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_readme_config_example_validates():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", readme, re.S).group(1)
    app = yaml.safe_load(block)["applications"][0]
    assert app["import_path"] == "serve_app.builder:build_app"
    cfg = load_config(app["args"], environ={})
    assert cfg.families["flux"].num_gpus == 1 and cfg.storage.retention_days == 30
