"""FLUX.1 [schnell | dev | Krea-dev] through diffusers' FluxPipeline family."""

from __future__ import annotations

from deployments import tiny
from serve_app.core.types import (
    ControlNetSpec,
    FamilySpec,
    ParameterSpec,
    tiny_parameters,
)


def build_tiny(path: str) -> None:
    from diffusers import FluxPipeline

    FluxPipeline(**tiny.flux_components()).save_pretrained(path)


# The FLUX VAE's 16 latent channels to RGB (the live-preview factors image tools use).
LATENT_RGB = (
    (-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433),
    (-0.0174, 0.0160, 0.0617), (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115),
    (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259), (-0.0245, 0.0250, 0.1180),
    (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499),
    (-0.1262, -0.0982, -0.0778))
LATENT_RGB_BIAS = (-0.0329, -0.0718, -0.0851)

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
    warm_by_default=True,
    latent_rgb=LATENT_RGB,
    latent_rgb_bias=LATENT_RGB_BIAS,  # the default config keeps one FLUX replica up
    takes_loras=True,
    # InstantX's and Shakker-Labs' ControlNets; the union ones take a control_mode
    controlnet=ControlNetSpec(("FluxControlNetModel",), "FluxMultiControlNetModel",
                              "FluxControlNetPipeline",
                              takes_mode=True,
                              fit_keys=("in_channels", "num_attention_heads",
                                        "attention_head_dim", "joint_attention_dim",
                                        "pooled_projection_dim")),
    reference="redux",  # FLUX.1 Redux: image tokens beside the prompt's
    build_tiny=build_tiny,
    tiny_parameters=tiny_parameters(PARAMETERS),
)
