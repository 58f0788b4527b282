"""Whether an adapter fits a base (`deployments.adapters.fit`), from safetensors headers alone:
no torch, no base loaded."""

from __future__ import annotations

from deployments.adapters.files import header_shapes
from deployments.adapters.fit import base_shapes, checkpoint_shapes, misfits, prefixed
from deployments.adapters.sources import WEIGHTS
from deployments.adapters.tiny import ensure_tiny_lora
from serve_app.core.types import ModelSource


def test_header_shapes_check_an_adapter_without_loading_the_base(flux):
    base = checkpoint_shapes(flux.data_dir / "tiny" / "flux")
    assert misfits(header_shapes(flux.first), base) == []
    other = (ensure_tiny_lora(flux.data_dir, "sdxl") / WEIGHTS).read_bytes()
    assert any("no component 'unet'" in p for p in misfits(header_shapes(other), base))
    shifted = {k.replace("transformer_blocks.0.", "transformer_blocks.99."): v
               for k, v in header_shapes(flux.first).items()}
    assert any("no module" in p for p in misfits(shifted, base))
    narrow = {k: [s[0], s[1] + 1] if ".lora_A." in k else s
              for k, s in header_shapes(flux.first).items()}
    assert any("does not fit" in p for p in misfits(narrow, base))


def test_a_model_source_finds_its_base_where_it_is_on_this_machine(flux, tmp_path):
    tiny = base_shapes(ModelSource(base="tessera/tiny-flux"), flux.data_dir, tmp_path)
    assert "transformer" in tiny and tiny == checkpoint_shapes(flux.data_dir / "tiny" / "flux")
    # not built here, outside the models directory, not in the Hugging Face cache: unknown
    assert base_shapes(ModelSource(base="tessera/tiny-sdxl"), tmp_path, tmp_path) == {}
    assert base_shapes(ModelSource(base=str(flux.data_dir / "tiny" / "flux")), flux.data_dir,
                       tmp_path) == {}
    assert base_shapes(ModelSource(base="nobody/nothing"), flux.data_dir, tmp_path) == {}


def test_only_keys_that_name_components_are_checked_before_conversion():
    assert prefixed({"transformer.a.lora_A.weight": [4, 8]}, {"transformer"})
    assert prefixed({"unet.a.lora_A.weight": [4, 8]}, {"transformer"})  # a known component
    assert not prefixed({"lora_unet_down_blocks_0.lora_down.weight": [4, 8]}, {"unet"})
    assert not prefixed({}, {"transformer"})
