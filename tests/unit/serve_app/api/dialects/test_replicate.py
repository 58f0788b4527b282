"""Replicate's inputs and names, translated to native requests (`api.dialects.replicate`)."""

from __future__ import annotations

import pytest

from serve_app.api.dialects import native_request
from serve_app.api.dialects.replicate import (
    REPLICATE_NAMES,
    ReplicateInput,
    adapter_path,
    native_name,
    openapi_schema,
)
from serve_app.core.errors import InvalidRequestError, UnknownModelError
from serve_app.core.models import ModelRecord
from serve_app.core.types import ModelSource, ParameterSpec
from serve_app.registry.catalog import CATALOG, find_entry

FILES = "https://h:1/replicate/v1/files/"


def record(kind: str = "pipeline", family: str = "flux", **spec) -> ModelRecord:
    return ModelRecord(id="tm_m_1", tenant="a", hf_model_id="m", family=family, kind=kind,
                       source=ModelSource(base="m"), price_per_image=0.01,
                       parameters=ParameterSpec(width=1024, height=1024, **spec))


def native(**inputs):
    return native_request(ReplicateInput, {"prompt": "p", **inputs}).to_native(record(), FILES)


def test_fields_become_native_ones():
    got = native(num_outputs=2, guidance=3.0, seed=4, output_format="jpg",
                 num_inference_steps=8, go_fast=True, apply_watermark=False)
    assert got == {"model": "tm_m_1", "prompt": "p", "response_format": "url",
                   "output_format": "jpeg", "n": 2, "guidance_scale": 3.0, "seed": 4,
                   "num_inference_steps": 8}
    assert native(guidance=3.0, guidance_scale=5.0)["guidance_scale"] == 5.0


@pytest.mark.parametrize("ratio, size", [("1:1", (1024, 1024)), ("16:9", (1360, 768)),
                                         ("9:16", (768, 1360)), ("21:9", (1568, 672))])
def test_an_aspect_ratio_keeps_the_models_area(ratio, size):
    got = native(aspect_ratio=ratio)
    assert (got["width"], got["height"]) == size
    assert abs(size[0] * size[1] / 1024 ** 2 - 1) < 0.05
    quarter = native(aspect_ratio=ratio, megapixels="0.25")
    assert abs(quarter["width"] * quarter["height"] / (0.25 * 1024 ** 2) - 1) < 0.05
    assert quarter["width"] % 16 == quarter["height"] % 16 == 0


def test_custom_sizes_images_and_adapters():
    assert (native(aspect_ratio="custom", width=512, height=384)["width"]) == 512
    with pytest.raises(InvalidRequestError):
        native(width=512)
    edit = native(image=f"{FILES}upl_abc", mask="data:image/png;base64,AA",
                  prompt_strength=0.3)
    assert edit["image"] == {"upload_id": "upl_abc"} and edit["strength"] == 0.3
    assert edit["mask_image"] == "data:image/png;base64,AA"
    assert native(image="https://elsewhere/x.png")["image"] == "https://elsewhere/x.png"
    with pytest.raises(InvalidRequestError):
        native(mask="https://x/m.png")  # a mask needs its image
    assert native(lora_weights="huggingface.co/o/n", lora_scale=0.7)["loras"] == [
        {"path": "o/n", "scale": 0.7}]
    assert "lora_scale" not in native(lora_scale=0.6)  # SDXL's default, with no weights
    lora_model = native_request(ReplicateInput, {"prompt": "p", "lora_scale": 0.5}).to_native(
        record(kind="lora"), FILES)
    assert lora_model["lora_scale"] == 0.5
    assert adapter_path("https://huggingface.co/o/n/w.safetensors") == "o/n/w.safetensors"
    assert adapter_path("https://x/y.safetensors") == "https://x/y.safetensors"


def test_unknown_inputs_are_named():
    with pytest.raises(InvalidRequestError) as info:
        native(sharpness=2)
    assert info.value.param == "sharpness"


def test_names():
    assert native_name("tenant-a/tm_x_1", "tenant-a") == "tm_x_1"
    with pytest.raises(UnknownModelError):
        native_name("tenant-a/not-a-model", "tenant-a")
    assert native_name("tenant-b/tm_x_1", "tenant-a") == "tenant-b/tm_x_1"  # not found later
    assert native_name("black-forest-labs/flux-schnell", "a") == (
        "black-forest-labs/FLUX.1-schnell")
    for name, catalog_id in REPLICATE_NAMES.items():
        assert find_entry(catalog_id) is CATALOG[catalog_id], name


def test_the_schema_is_the_models_own():
    props = openapi_schema(record(num_inference_steps=4, max_steps=12))["components"][
        "schemas"]["Input"]["properties"]
    assert props["num_inference_steps"] == {"type": "integer", "minimum": 1, "maximum": 12,
                                            "default": 4}
    assert {"image", "mask", "lora_weights"} <= set(props)
    sdxl = openapi_schema(record(family="pixart-sigma", negative_prompt=True))
    props = sdxl["components"]["schemas"]["Input"]["properties"]
    assert "negative_prompt" in props and "lora_weights" not in props and "image" not in props
