"""LongCat-Image-Edit: instruction edits through LongCatImageEditPipeline."""

from __future__ import annotations

from deployments import tiny
from serve_app.core.types import (
    FamilySpec,
    ParameterSpec,
    tiny_parameters,
)


def tiny_components() -> dict:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, LongCatImageTransformer2DModel

    tokenizer = tiny.qwen2_tokenizer()
    torch.manual_seed(0)
    transformer = LongCatImageTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=16,
        axes_dims_rope=[4, 4, 8])
    return dict(scheduler=FlowMatchEulerDiscreteScheduler(), tokenizer=tokenizer,
                vae=tiny.vae_kl(latent_channels=16, use_quant_conv=False,
                                use_post_quant_conv=False, shift_factor=0.0609,
                                scaling_factor=1.5035),
                text_encoder=tiny.qwen25_vl_encoder(tokenizer), transformer=transformer)


def build_tiny(path: str) -> None:
    from diffusers import LongCatImageEditPipeline

    components = tiny_components()
    # Qwen2VLProcessor: transformers builds it only with torchvision installed
    components["text_processor"] = tiny.qwen2_vl_processor(components["tokenizer"])
    LongCatImageEditPipeline(**components).save_pretrained(path)


PARAMETERS = ParameterSpec(num_inference_steps=50, guidance_scale=4.5, negative_prompt=True)

SPEC = FamilySpec(
    name="longcat-edit",
    display_name="LongCat-Image-Edit",
    pipelines={"edit": "LongCatImageEditPipeline"},
    single_prompt=True,
    parameters=PARAMETERS,
    build_tiny=build_tiny,
    tiny_parameters=tiny_parameters(PARAMETERS),
    needs_modules=("torchvision",),  # transformers builds Qwen2VLProcessor only with it
)
