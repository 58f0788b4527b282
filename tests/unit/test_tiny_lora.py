"""Tiny LoRA repositories made with peft on the real tiny pipelines, loaded back the way the
replica will load them: from a state dict Tessera parsed (core.lora), unfused."""

from __future__ import annotations

import numpy as np
import pytest

from deployments.registry import FAMILIES
from deployments.tiny_lora import WEIGHTS, build_tiny_lora, loads_loras
from serve_app.core.lora import load


def image(pipe, **kw):
    import torch

    out = pipe(prompt="a red fox", num_inference_steps=2, height=64, width=64,
               generator=torch.Generator().manual_seed(3), output_type="np", **kw)
    return np.asarray(out.images[0])


@pytest.mark.parametrize("family", ["flux", "sdxl"])
def test_a_tiny_adapter_changes_the_image_and_scale_zero_gives_the_base(tmp_path, family):
    from diffusers import DiffusionPipeline

    FAMILIES[family].build_tiny(str(tmp_path / "base"))
    pipe = DiffusionPipeline.from_pretrained(str(tmp_path / "base"))
    pipe.set_progress_bar_config(disable=True)
    assert loads_loras(pipe)
    base = image(pipe)
    repo = build_tiny_lora(pipe, family, tmp_path / "lora")
    assert f"base_model: tessera/tiny-{family}" in (repo / "README.md").read_text()
    assert np.array_equal(image(pipe), base)  # building it left the base as it was

    info, tensors = load((repo / WEIGHTS).read_bytes(), param="loras[0].path",
                         max_bytes=64 * 1024 * 1024)
    assert info.rank == 4 and info.target_modules
    pipe.load_lora_weights(tensors, adapter_name="a")
    pipe.set_adapters(["a"], [1.0])
    with_adapter = image(pipe)
    assert not np.array_equal(with_adapter, base)
    pipe.set_adapters(["a"], [0.0])
    assert np.array_equal(image(pipe), base)  # scale 0: the base's own bytes
    pipe.set_adapters(["a"], [1.0])
    assert np.array_equal(image(pipe), with_adapter)  # unfused: switching back is exact
