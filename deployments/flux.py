"""FLUX.1 [schnell | dev | Krea-dev] through diffusers' FluxPipeline family."""

from __future__ import annotations

from ray import serve

from deployments import tiny
from deployments.base import FamilyDeployment, FamilySpec, ParameterSpec
from deployments.registry import register


def build_tiny(path: str) -> None:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    tokenizer, tokenizer_2 = tiny.clip_tokenizer(), tiny.t5_tokenizer()
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8])
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=tiny.vae_kl(latent_channels=4, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=tiny.clip_text_encoder(len(tokenizer)), tokenizer=tokenizer,
        text_encoder_2=tiny.t5_encoder(len(tokenizer_2)), tokenizer_2=tokenizer_2,
        transformer=transformer)
    pipe.save_pretrained(path)


SPEC = FamilySpec(
    name="flux",
    display_name="FLUX.1",
    pipelines={"text-to-image": "FluxPipeline", "image-to-image": "FluxImg2ImgPipeline",
               "inpaint": "FluxInpaintPipeline"},
    parameters=ParameterSpec(num_inference_steps=28, max_steps=50, guidance_scale=3.5,
                             max_guidance_scale=20.0, width=1024, height=1024, max_side=2048,
                             max_pixels=2048 * 2048, negative_prompt=False),
    call_kwargs={"max_sequence_length": 256},
    build_tiny=build_tiny,
    tiny_parameters=ParameterSpec(num_inference_steps=4, max_steps=50, guidance_scale=3.5,
                                  width=256, height=256, max_side=1024, max_pixels=1024 * 1024),
)


@serve.deployment(name=SPEC.deployment_name)
class FluxDeployment(FamilyDeployment):
    SPEC = SPEC


register(SPEC, FluxDeployment)
