"""Qwen-Image-Edit: instruction edits through QwenImageEditPipeline."""

from __future__ import annotations

from deployments import tiny
from serve_app.core.types import (
    FamilySpec,
    ParameterSpec,
    tiny_parameters,
)


def build_tiny(path: str) -> None:
    from diffusers import QwenImageEditPipeline

    components = tiny.qwen_image_components()
    components["processor"] = tiny.qwen2_vl_processor(components["tokenizer"])
    QwenImageEditPipeline(**components).save_pretrained(path)


PARAMETERS = ParameterSpec(num_inference_steps=50, guidance_scale=4.0, negative_prompt=True)

SPEC = FamilySpec(
    name="qwen-image-edit",
    display_name="Qwen-Image-Edit",
    pipelines={"edit": "QwenImageEditPipeline"},
    extra_classes=("QwenImageEditPlusPipeline",),
    guidance_kwarg="true_cfg_scale",
    parameters=PARAMETERS,
    call_kwargs={"max_sequence_length": 512},
    batch_by_prompt=True,  # its Qwen2.5-VL prompts are padded to the longest in a batch
    takes_loras=True,
    build_tiny=build_tiny,
    tiny_parameters=tiny_parameters(PARAMETERS),
    needs_modules=("torchvision",),  # transformers builds Qwen2VLProcessor only with it
)
