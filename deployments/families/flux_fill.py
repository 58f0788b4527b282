"""FLUX.1 Fill [dev]: mask inpainting with FluxFillPipeline."""

from __future__ import annotations

from deployments import tiny
from deployments.families import flux
from serve_app.core.types import (
    FamilySpec,
    ParameterSpec,
    tiny_parameters,
)


def build_tiny(path: str) -> None:
    from diffusers import FluxFillPipeline

    # latents (16 packed) + masked-image latents (16) + the 8x8 mask packed 2x2 (256)
    components = tiny.flux_components(in_channels=288, out_channels=16)
    FluxFillPipeline(**components).save_pretrained(path)


PARAMETERS = ParameterSpec(num_inference_steps=50, max_steps=100, guidance_scale=30.0,
                           max_guidance_scale=100.0, strength=1.0)

SPEC = FamilySpec(
    name="flux-fill",
    display_name="FLUX.1 Fill",
    pipelines={"inpaint": "FluxFillPipeline"},
    parameters=PARAMETERS,
    call_kwargs={"max_sequence_length": 256},
    takes_loras=True,
    build_tiny=build_tiny,
    tiny_parameters=tiny_parameters(PARAMETERS),
    latent_rgb=flux.LATENT_RGB,
    latent_rgb_bias=flux.LATENT_RGB_BIAS,
)
