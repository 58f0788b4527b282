"""Qwen-Image (and Qwen-Image-2512) through QwenImagePipeline and its variants."""

from __future__ import annotations

from deployments import tiny
from serve_app.core.types import (
    ControlNetSpec,
    FamilySpec,
    ParameterSpec,
    tiny_parameters,
)


def build_tiny(path: str) -> None:
    from diffusers import QwenImagePipeline

    QwenImagePipeline(**tiny.qwen_image_components()).save_pretrained(path)


PARAMETERS = ParameterSpec(num_inference_steps=50, guidance_scale=4.0, negative_prompt=True,
                           width=1328, height=1328, max_side=2048)

SPEC = FamilySpec(
    name="qwen-image",
    display_name="Qwen-Image",
    pipelines={"text-to-image": "QwenImagePipeline",
               "image-to-image": "QwenImageImg2ImgPipeline",
               "inpaint": "QwenImageInpaintPipeline"},
    # Qwen-Image is not guidance-distilled: the API's guidance_scale is its true CFG scale,
    # which applies when a negative prompt is given.
    guidance_kwarg="true_cfg_scale",
    parameters=PARAMETERS,
    call_kwargs={"max_sequence_length": 512},
    batch_by_prompt=True,  # its Qwen2.5-VL prompts are padded to the longest in a batch
    takes_loras=True,
    controlnet=ControlNetSpec(("QwenImageControlNetModel",), "QwenImageMultiControlNetModel",
                              "QwenImageControlNetPipeline",
                              max_controlnets=1,  # diffusers runs one Qwen-Image ControlNet
                              fit_keys=("num_attention_heads", "attention_head_dim",
                                        "joint_attention_dim")),
    build_tiny=build_tiny,
    tiny_parameters=tiny_parameters(PARAMETERS),
)
