"""The family registry (`deployments.registry`): every family as data, found by pipeline class,
and what it says of itself matches what diffusers says of its pipelines."""

from __future__ import annotations

import pytest

from deployments.adapters.convert import pipeline_takes_loras
from deployments.registry import FAMILIES, family_for_pipeline, takes_loras
from serve_app.registry.catalog import CATALOG


def test_registry_maps_pipeline_classes_to_families():
    assert family_for_pipeline("FluxPipeline").name == "flux"
    assert family_for_pipeline("FluxImg2ImgPipeline").name == "flux"
    assert family_for_pipeline("NoSuchPipeline") is None
    for name, spec in FAMILIES.items():
        assert spec.name == name and spec.tasks and spec.build_tiny is not None
        assert f"tessera/tiny-{name}" in CATALOG
        assert spec.deployment_name == f"family-{name}"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_takes_loras_is_what_diffusers_says_of_every_pipeline(family):
    """The ingress reads `takes_loras` as data; diffusers is the truth it must match."""
    spec = FAMILIES[family]
    assert spec.takes_loras == all(pipeline_takes_loras(c) for c in spec.pipelines.values())
    assert takes_loras(family) == spec.takes_loras


def test_families_that_take_adapters():
    lora = {n for n in FAMILIES if takes_loras(n)}
    assert {"flux", "flux2", "sdxl", "sd3", "qwen-image", "z-image"} <= lora
    assert not {"pixart-sigma", "hunyuan-image", "longcat-edit"} & lora
    assert not takes_loras("no-such-family")
