"""Stable Diffusion XL through StableDiffusionXLPipeline and its variants."""

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
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    tok = tiny.clip_tokenizer()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,  # 6 time ids x 8 + the 32-wide pooled text
        cross_attention_dim=64, norm_num_groups=1)
    StableDiffusionXLPipeline(
        vae=tiny.vae_kl(latent_channels=4), unet=unet,
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                         beta_schedule="scaled_linear",
                                         timestep_spacing="leading"),
        text_encoder=tiny.clip_text_encoder(len(tok)), tokenizer=tok,
        text_encoder_2=tiny.clip_text_encoder(len(tok), with_projection=True), tokenizer_2=tok,
    ).save_pretrained(path)


PARAMETERS = ParameterSpec(num_inference_steps=30, guidance_scale=5.0, negative_prompt=True)

# The SDXL VAE's 4 latent channels to RGB (also PixArt-Sigma's VAE).
LATENT_RGB = ((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068),
              (0.1076, 0.1111, -0.0362), (-0.3165, -0.2492, -0.2188))
LATENT_RGB_BIAS = (0.1084, -0.0175, -0.0011)

SPEC = FamilySpec(
    name="sdxl",
    display_name="Stable Diffusion XL",
    pipelines={"text-to-image": "StableDiffusionXLPipeline",
               "image-to-image": "StableDiffusionXLImg2ImgPipeline",
               "inpaint": "StableDiffusionXLInpaintPipeline"},
    parameters=PARAMETERS,
    takes_loras=True,
    controlnet=ControlNetSpec(("ControlNetModel",), "MultiControlNetModel",
                              "StableDiffusionXLControlNetPipeline",
                              image_kwarg="image",
                              # SD 1.5's ControlNets share the class, not the SDXL time ids
                              config_requires=(("addition_embed_type", "text_time"),),
                              fit_keys=("block_out_channels", "cross_attention_dim",
                                        "transformer_layers_per_block",
                                        "projection_class_embeddings_input_dim")),
    reference="ip-adapter",
    build_tiny=build_tiny,
    tiny_parameters=tiny_parameters(PARAMETERS),
    latent_rgb=LATENT_RGB,
    latent_rgb_bias=LATENT_RGB_BIAS,
)
