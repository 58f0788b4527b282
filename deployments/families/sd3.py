"""Stable Diffusion 3.5 (large, medium) through StableDiffusion3Pipeline and its variants."""

from __future__ import annotations

from deployments import tiny
from serve_app.core.types import (
    FamilySpec,
    ParameterSpec,
    tiny_parameters,
)


def build_tiny(path: str) -> None:
    import torch
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    tok, tok3 = tiny.clip_tokenizer(), tiny.t5_tokenizer()
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=32, patch_size=1, in_channels=16, num_layers=1, attention_head_dim=8,
        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=32,
        pooled_projection_dim=64, out_channels=16)
    StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(),
        # 16 latent channels as the real SD3 VAE: the inpaint pipeline insists on them
        vae=tiny.vae_kl(latent_channels=16, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=tiny.clip_text_encoder(len(tok), with_projection=True), tokenizer=tok,
        text_encoder_2=tiny.clip_text_encoder(len(tok), with_projection=True), tokenizer_2=tok,
        text_encoder_3=tiny.t5_encoder(len(tok3)), tokenizer_3=tok3,
    ).save_pretrained(path)


PARAMETERS = ParameterSpec(num_inference_steps=28, guidance_scale=3.5, negative_prompt=True)

SPEC = FamilySpec(
    name="sd3",
    display_name="Stable Diffusion 3.5",
    pipelines={"text-to-image": "StableDiffusion3Pipeline",
               "image-to-image": "StableDiffusion3Img2ImgPipeline",
               "inpaint": "StableDiffusion3InpaintPipeline"},
    parameters=PARAMETERS,
    call_kwargs={"max_sequence_length": 256},
    build_tiny=build_tiny,
    tiny_parameters=tiny_parameters(PARAMETERS),
)
