"""Stable Diffusion 3.5 (large, medium) through StableDiffusion3Pipeline and its variants."""

from __future__ import annotations

from deployments import tiny
from serve_app.core.types import (
    ControlNetSpec,
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
        sample_size=32, patch_size=1, in_channels=16, num_layers=2, attention_head_dim=8,
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

# The SD3 VAE's 16 latent channels to RGB.
LATENT_RGB = (
    (-0.0922, -0.0175, 0.0749), (0.0311, 0.0633, 0.0954), (0.1994, 0.0927, 0.0458),
    (0.0856, 0.0339, 0.0902), (0.0587, 0.0272, -0.0496), (-0.0006, 0.1104, 0.0309),
    (0.0978, 0.0306, 0.0427), (-0.0042, 0.1038, 0.1358), (-0.0194, 0.0020, 0.0669),
    (-0.0488, 0.0130, -0.0268), (0.0922, 0.0988, 0.0951), (-0.0278, 0.0524, -0.0542),
    (0.0332, 0.0456, 0.0895), (-0.0069, -0.0030, -0.0810), (-0.0596, -0.0465, -0.0293),
    (-0.1448, -0.1463, -0.1189))
LATENT_RGB_BIAS = (0.2394, 0.2135, 0.1925)

SPEC = FamilySpec(
    name="sd3",
    display_name="Stable Diffusion 3.5",
    pipelines={"text-to-image": "StableDiffusion3Pipeline",
               "image-to-image": "StableDiffusion3Img2ImgPipeline",
               "inpaint": "StableDiffusion3InpaintPipeline"},
    parameters=PARAMETERS,
    call_kwargs={"max_sequence_length": 256},
    takes_loras=True,
    controlnet=ControlNetSpec(("SD3ControlNetModel",), "SD3MultiControlNetModel",
                              "StableDiffusion3ControlNetPipeline",
                              unseeded_encode=True,
                              fit_keys=("num_attention_heads", "attention_head_dim",
                                        "joint_attention_dim", "caption_projection_dim",
                                        "pooled_projection_dim")),
    build_tiny=build_tiny,
    tiny_parameters=tiny_parameters(PARAMETERS),
    latent_rgb=LATENT_RGB,
    latent_rgb_bias=LATENT_RGB_BIAS,
)
