"""FLUX.1 Kontext [dev]: instruction edits with FluxKontextPipeline."""

from __future__ import annotations

from deployments import tiny
from deployments.families import flux
from serve_app.core.types import (
    FamilySpec,
    ParameterSpec,
    tiny_parameters,
)


def build_tiny(path: str) -> None:
    from diffusers import FluxKontextPipeline

    FluxKontextPipeline(**tiny.flux_components()).save_pretrained(path)


PARAMETERS = ParameterSpec(num_inference_steps=28, guidance_scale=2.5)

SPEC = FamilySpec(
    name="flux-kontext",
    display_name="FLUX.1 Kontext",
    pipelines={"edit": "FluxKontextPipeline"},
    parameters=PARAMETERS,
    # Kontext rescales every output to max_area (1 MP by default): the API's size must win.
    call_kwargs={"max_sequence_length": 256, "_auto_resize": False,
                 "max_area": lambda params: params.width * params.height},
    takes_loras=True,
    build_tiny=build_tiny,
    tiny_parameters=tiny_parameters(PARAMETERS),
    latent_rgb=flux.LATENT_RGB,
    latent_rgb_bias=flux.LATENT_RGB_BIAS,
)
