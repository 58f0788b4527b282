"""The built-in tiny LoRA repositories (`deployments.adapters.tiny`), made with peft on the
real tiny pipelines and loaded back the way the replica loads them: from a state dict Tessera
parsed (`files`), unfused."""

from __future__ import annotations

import numpy as np
import pytest

from deployments.adapters.cache import AdapterCache
from deployments.adapters.files import header_shapes, load
from deployments.adapters.fit import checkpoint_shapes, misfits
from deployments.adapters.sources import WEIGHTS, AdapterFile
from deployments.adapters.tiny import build_tiny_lora, ensure_tiny_lora
from deployments.calls import PipelineCalls
from deployments.loading import load_pipeline
from deployments.registry import FAMILIES
from serve_app.core.models import AdapterSource
from serve_app.core.types import TINY_PREFIX, ModelSource
from tests.support.adapters import job, ref, run
from tests.support.families import family_param

pytestmark = pytest.mark.slow

LORA_FAMILIES = sorted(n for n, s in FAMILIES.items() if s.takes_loras)


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


@pytest.mark.parametrize("family", [family_param(n) for n in LORA_FAMILIES])
def test_every_lora_family_has_a_tiny_lora_that_fits_and_changes_its_images(family, tmp_path):
    """`tessera/tiny-<family>-lora` of every family whose pipelines load LoRAs: laid out as on
    the Hub, it fits its base by the weight headers and by the loaded modules, and (where the
    family makes images from text) it changes the image while scale 0 gives the base's."""
    repo = ensure_tiny_lora(tmp_path, family)
    data = (repo / WEIGHTS).read_bytes()
    found = AdapterFile(AdapterSource(kind="tiny", name=f"{TINY_PREFIX}{family}-lora"), data,
                        (repo / "README.md").read_text())
    assert found.card_base_model == f"{TINY_PREFIX}{family}"
    assert misfits(header_shapes(data), checkpoint_shapes(tmp_path / "tiny" / family)) == []
    pipe = load_pipeline(ModelSource(base=f"{TINY_PREFIX}{family}"), str(tmp_path), "cpu",
                         None, batch_invariant=True)
    cache = AdapterCache(1 << 30, 1 << 30, batch_invariant=True)
    calls = PipelineCalls(FAMILIES[family], 4, "cpu", batch_invariant=True, adapters=cache)
    adapter = ref(data)
    cache.prepare(pipe, adapter, data, "loras[0].path", 256)
    cache.activate(pipe, [adapter])
    if "text-to-image" not in FAMILIES[family].pipelines:
        return
    base = run(calls, pipe, job("base"))[0]["base"]
    assert run(calls, pipe, job("a", [adapter]))[0]["a"] != base
    assert run(calls, pipe, job("z", [ref(data, 0.0)]))[0]["z"] == base


def test_families_without_adapters_have_no_tiny_lora(tmp_path):
    assert ensure_tiny_lora(tmp_path, "pixart-sigma") is None
    assert not (tmp_path / "tiny").exists()  # nothing was built to find that out
