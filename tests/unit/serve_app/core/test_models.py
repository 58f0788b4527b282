"""Names with structure, parsed once into typed values (`core.models`): model and adapter
sources, tenant model ids."""

from __future__ import annotations

import pytest

from serve_app.core.errors import LoraUnreachableError
from serve_app.core.models import AdapterSource, is_tenant_model, new_model_id
from serve_app.core.types import ModelSource, tiny_family


def test_a_model_source_round_trips_through_its_multiplexed_key():
    plain = ModelSource(base="tessera/tiny-flux")
    finetune = ModelSource(base="black-forest-labs/FLUX.1-dev", transformer="tencent/SRPO")
    assert plain.key != finetune.key
    for source in (plain, finetune, ModelSource(base="/models/a|b")):  # a | is just a char
        assert ModelSource.from_key(source.key) == source
    assert plain.tiny_family == "flux" and finetune.tiny_family is None
    assert str(finetune) == "black-forest-labs/FLUX.1-dev (transformer: tencent/SRPO)"


@pytest.mark.parametrize("path, kind, name, file", [
    ("tm_my-lora_1a2b3c4d", "model", "tm_my-lora_1a2b3c4d", None),
    ("https://example.com/a.safetensors", "url", "https://example.com/a.safetensors", None),
    ("http://127.0.0.1:9/x", "url", "http://127.0.0.1:9/x", None),
    ("tessera/tiny-flux-lora", "tiny", "tessera/tiny-flux-lora", None),
    ("tessera/tiny-sdxl-lora/pytorch_lora_weights.safetensors", "tiny",
     "tessera/tiny-sdxl-lora", "pytorch_lora_weights.safetensors"),
    ("owner/name", "hub", "owner/name", None),
    ("owner/name/sub/dir/file.safetensors", "hub", "owner/name", "sub/dir/file.safetensors"),
    ("tessera/tiny-flux", "hub", "tessera/tiny-flux", None),  # a checkpoint, not an adapter
])
def test_an_adapter_path_is_parsed_once_into_its_kind(path, kind, name, file):
    source = AdapterSource.parse(path, "loras[0].path")
    assert (source.kind, source.name, source.file) == (kind, name, file)
    assert str(source) == path


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "owner/../x", "ftp://h/x", "x",
                                  "owner/name/../../etc"])
def test_anything_else_is_unreachable_naming_the_field(path):
    with pytest.raises(LoraUnreachableError) as info:
        AdapterSource.parse(path, "loras[2].path")
    assert info.value.param == "loras[2].path"


def test_tenant_model_ids_and_tiny_ids():
    made = new_model_id("Some-Org/My Fancy.Model")
    assert is_tenant_model(made) and made.startswith("tm_my-fancy-model_")
    assert not is_tenant_model("black-forest-labs/FLUX.1-schnell")
    assert tiny_family("tessera/tiny-sd3") == "sd3" and tiny_family("owner/name") is None
    assert AdapterSource.parse("tessera/tiny-qwen-image-lora", "p").tiny_family == "qwen-image"
