"""The family registry (`deployments.registry`): every family as data, found by pipeline class,
and what it says of itself matches what diffusers says of its pipelines."""

from __future__ import annotations

import pytest

from deployments.adapters.convert import pipeline_takes_loras
from deployments.registry import (
    FAMILIES,
    family_for_controlnet,
    family_for_pipeline,
    takes_loras,
)
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
    if spec.upscale_factors:  # an upscale request names no adapters, whatever the pipeline
        assert not spec.takes_loras
    else:
        assert spec.takes_loras == all(pipeline_takes_loras(c)
                                       for c in spec.pipelines.values())
    assert takes_loras(family) == spec.takes_loras


@pytest.mark.parametrize("family", sorted(n for n, s in FAMILIES.items() if s.controlnet))
def test_controlnet_data_is_what_diffusers_has(family):
    """The ingress reads a family's ControlNet data without diffusers: the classes exist, the
    pipeline takes a ControlNet, the control image under the named keyword, and a
    control_mode exactly where the data says it does."""
    import inspect

    import diffusers

    control = FAMILIES[family].controlnet
    for name in (*control.model_classes, control.multi_class):
        assert issubclass(getattr(diffusers, name), diffusers.ModelMixin)
    pipeline = getattr(diffusers, control.pipeline)
    assert "controlnet" in inspect.signature(pipeline.__init__).parameters
    accepted = inspect.signature(pipeline.__call__).parameters
    assert control.image_kwarg in accepted
    assert {"controlnet_conditioning_scale", "control_guidance_start",
            "control_guidance_end"} <= set(accepted)
    assert control.takes_mode == ("control_mode" in accepted)


def test_controlnets_are_found_by_their_config():
    assert family_for_controlnet({"_class_name": "FluxControlNetModel"}).name == "flux"
    assert family_for_controlnet({"_class_name": "ControlNetModel",
                                  "addition_embed_type": "text_time"}).name == "sdxl"
    # SD 1.5's ControlNets share SDXL's class, not its time ids: no family here runs them
    assert family_for_controlnet({"_class_name": "ControlNetModel"}) is None
    assert family_for_controlnet({"_class_name": "UNet2DConditionModel"}) is None


def test_families_that_take_adapters():
    lora = {n for n in FAMILIES if takes_loras(n)}
    assert {"flux", "flux2", "sdxl", "sd3", "qwen-image", "z-image"} <= lora
    assert not {"pixart-sigma", "hunyuan-image", "longcat-edit"} & lora
    assert not takes_loras("no-such-family")
