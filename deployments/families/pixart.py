"""PixArt-Sigma through PixArtSigmaPipeline."""

from __future__ import annotations

from deployments import tiny
from deployments.families import sdxl
from serve_app.core.types import (
    FamilySpec,
    ParameterSpec,
    tiny_parameters,
)


def build_tiny(path: str) -> None:
    import torch
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    tok = tiny.t5_tokenizer()
    torch.manual_seed(0)
    transformer = PixArtTransformer2DModel(
        sample_size=32, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=3,
        caption_channels=32, in_channels=4, cross_attention_dim=24, out_channels=8,
        attention_bias=True, activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
        norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6)
    PixArtSigmaPipeline(tokenizer=tok, text_encoder=tiny.t5_encoder(len(tok)),
                        vae=tiny.vae_kl(latent_channels=4), transformer=transformer,
                        scheduler=DPMSolverMultistepScheduler()).save_pretrained(path)


PARAMETERS = ParameterSpec(num_inference_steps=20, guidance_scale=4.5, negative_prompt=True)

SPEC = FamilySpec(
    name="pixart-sigma",
    display_name="PixArt-Sigma",
    pipelines={"text-to-image": "PixArtSigmaPipeline"},
    parameters=PARAMETERS,
    # the API's size is generated as asked, not snapped to PixArt's aspect-ratio bins
    call_kwargs={"max_sequence_length": 300, "use_resolution_binning": False,
                 "clean_caption": False},
    build_tiny=build_tiny,
    tiny_parameters=tiny_parameters(PARAMETERS),
    latent_rgb=sdxl.LATENT_RGB,
    latent_rgb_bias=sdxl.LATENT_RGB_BIAS,
)
