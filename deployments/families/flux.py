"""FLUX.1 [schnell | dev | Krea-dev] through diffusers' FluxPipeline family."""

from __future__ import annotations

from deployments import tiny
from serve_app.core.types import (
    FamilySpec,
    ParameterSpec,
    tiny_parameters,
)


def build_tiny(path: str) -> None:
    from diffusers import FluxPipeline

    FluxPipeline(**tiny.flux_components()).save_pretrained(path)


PARAMETERS = ParameterSpec(num_inference_steps=28, max_steps=50, guidance_scale=3.5,
                           max_guidance_scale=20.0, width=1024, height=1024, max_side=2048,
                           max_pixels=2048 * 2048, negative_prompt=False)

SPEC = FamilySpec(
    name="flux",
    display_name="FLUX.1",
    pipelines={"text-to-image": "FluxPipeline", "image-to-image": "FluxImg2ImgPipeline",
               "inpaint": "FluxInpaintPipeline"},
    parameters=PARAMETERS,
    call_kwargs={"max_sequence_length": 256},
    warm_by_default=True,  # the default config keeps one FLUX replica up
    build_tiny=build_tiny,
    tiny_parameters=tiny_parameters(PARAMETERS),
)
