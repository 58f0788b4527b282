"""The Stable Diffusion ×4 upscaler (diffusers' StableDiffusionUpscalePipeline): a latent
diffusion upscaler guided by an optional prompt, run on 128-pixel input tiles (its native 512
output)."""

from __future__ import annotations

from deployments import tiny
from serve_app.core.types import FamilySpec, ParameterSpec


def build_tiny(path: str) -> None:
    """The real pipeline's layout at toy width: a UNet taking the latents and the low-res image
    (7 channels) with a noise-level class embedding, and a three-block VAE (×4)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )

    tok = tiny.clip_tokenizer()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 8, 16), layers_per_block=1, sample_size=32, in_channels=7,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D",
                                          "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, use_linear_projection=True,
        only_cross_attention=(True, True, False), num_class_embeds=100, norm_num_groups=4)
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=[4, 4, 4], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 3,
                        up_block_types=["UpDecoderBlock2D"] * 3, latent_channels=4,
                        norm_num_groups=1, layers_per_block=1,
                        scaling_factor=0.08333)  # the real upscaler's VAE scale
    StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=tiny.clip_text_encoder(len(tok)), tokenizer=tok, unet=unet,
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"), max_noise_level=350,
    ).save_pretrained(path)


PARAMETERS = ParameterSpec(num_inference_steps=50, max_steps=100, guidance_scale=9.0,
                           max_guidance_scale=20.0, width=512, height=512, negative_prompt=True,
                           upscale_factor=4)

SPEC = FamilySpec(
    name="sd-upscaler",
    display_name="Stable Diffusion x4 upscaler",
    pipelines={"upscale": "StableDiffusionUpscalePipeline"},
    parameters=PARAMETERS,
    call_kwargs={"noise_level": 20},
    upscale_factors=(4,),
    upscale_tile=128,
    build_tiny=build_tiny,
    tiny_parameters=PARAMETERS.model_copy(update={"num_inference_steps": 4}),
)
