"""The README's config example is valid config; the tiny pipeline runs on CUDA where present."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from serve_app.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def test_readme_config_example_validates():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", readme, re.S).group(1)
    app = yaml.safe_load(block)["applications"][0]
    assert app["import_path"] == "serve_app.builder:build_app"
    cfg = load_config(app["args"], environ={})
    assert cfg.families["flux"].num_gpus == 1 and cfg.storage.retention_days == 30


@pytest.mark.gpu
def test_tiny_flux_on_cuda_bf16(tmp_path):
    import torch
    from diffusers import DiffusionPipeline

    from deployments.registry import FAMILIES

    FAMILIES["flux"].build_tiny(str(tmp_path))
    pipe = DiffusionPipeline.from_pretrained(str(tmp_path), dtype=torch.bfloat16).to("cuda")
    image = pipe(prompt="p", width=128, height=96, num_inference_steps=2,
                 generator=torch.Generator("cpu").manual_seed(0)).images[0]
    assert image.size == (128, 96)
