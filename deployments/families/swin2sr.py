"""Swin2SR super-resolution (transformers' `Swin2SRForImageSuperResolution`), ×2 and ×4
checkpoints: an upscaler family. Its checkpoints are transformers models, not diffusers
pipelines, so the family loads them with its own loader (`deployments.upscale`)."""

from __future__ import annotations

from deployments.upscale import load_swin2sr
from serve_app.core.types import FamilySpec, ParameterSpec


def build_tiny(path: str) -> None:
    """A one-block ×2 Swin2SR with its image processor, saved as the real checkpoints are."""
    import torch
    from transformers import (
        Swin2SRConfig,
        Swin2SRForImageSuperResolution,
        Swin2SRImageProcessor,
    )

    torch.manual_seed(0)
    Swin2SRForImageSuperResolution(Swin2SRConfig(
        image_size=32, patch_size=1, num_channels=3, embed_dim=16, depths=[1], num_heads=[2],
        window_size=4, upscale=2, upsampler="pixelshuffle", mlp_ratio=1.0,
    )).save_pretrained(path, safe_serialization=True)
    Swin2SRImageProcessor(pad_size=4).save_pretrained(path)


# one forward pass: no steps, no guidance, no prompt
PARAMETERS = ParameterSpec(num_inference_steps=1, max_steps=1, guidance_scale=None,
                           width=512, height=512, upscale_factor=4, prompt=False)

SPEC = FamilySpec(
    name="swin2sr",
    display_name="Swin2SR",
    pipelines={"upscale": "Swin2SRForImageSuperResolution"},
    parameters=PARAMETERS,
    guidance_kwarg=None,
    upscale_factors=(2, 4),
    upscale_tile=256,
    load=load_swin2sr,
    index_file="config.json",
    build_tiny=build_tiny,
    tiny_parameters=PARAMETERS.model_copy(update={"upscale_factor": 2}),
)
