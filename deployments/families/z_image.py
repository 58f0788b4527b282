"""Z-Image (Turbo) through ZImagePipeline and ZImageImg2ImgPipeline."""

from __future__ import annotations

from deployments import tiny
from deployments.families import flux
from serve_app.core.types import (
    FamilySpec,
    ParameterSpec,
    tiny_parameters,
)


def build_tiny(path: str) -> None:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = tiny.qwen2_tokenizer()
    torch.manual_seed(0)
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=32, n_layers=2,
        n_refiner_layers=1, n_heads=2, n_kv_heads=2, norm_eps=1e-5, qk_norm=True,
        cap_feat_dim=16, rope_theta=256.0, t_scale=1000.0, axes_dims=[8, 4, 4],
        axes_lens=[256, 32, 32])
    with torch.no_grad():  # created with torch.empty: give them defined values
        transformer.x_pad_token.copy_(torch.ones_like(transformer.x_pad_token))
        transformer.cap_pad_token.copy_(torch.ones_like(transformer.cap_pad_token))
    torch.manual_seed(0)
    text_encoder = Qwen3Model(Qwen3Config(
        hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=512))
    ZImagePipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=tiny.vae_kl(latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159),
        text_encoder=text_encoder, tokenizer=tokenizer).save_pretrained(path)


PARAMETERS = ParameterSpec(num_inference_steps=8, max_steps=50, guidance_scale=None,
                           negative_prompt=False)

SPEC = FamilySpec(
    name="z-image",
    display_name="Z-Image",
    pipelines={"text-to-image": "ZImagePipeline", "image-to-image": "ZImageImg2ImgPipeline"},
    # Turbo is distilled: 8 steps, no classifier-free guidance
    parameters=PARAMETERS,
    call_kwargs={"max_sequence_length": 512},
    takes_loras=True,
    build_tiny=build_tiny,
    tiny_parameters=tiny_parameters(PARAMETERS),
    latent_rgb=flux.LATENT_RGB,
    latent_rgb_bias=flux.LATENT_RGB_BIAS,
)
