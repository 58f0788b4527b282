"""FLUX.2 [dev] through Flux2Pipeline: generation, and edits with several reference images."""

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
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2Pipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    # The real checkpoint's tokenizer is a PixtralProcessor, which transformers only builds
    # with torchvision; the pipeline uses nothing of it but apply_chat_template, which this
    # tokenizer (with a chat template) provides.
    tokenizer = tiny.qwen2_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in tiny.QWEN_SPECIAL_TOKENS}
    torch.manual_seed(0)
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=48,  # three 16-wide text layers, stacked
        timestep_guidance_channels=256, axes_dims_rope=[4, 4, 4, 4])
    config = Mistral3Config(
        text_config={"model_type": "mistral", "vocab_size": len(tokenizer), "hidden_size": 16,
                     "intermediate_size": 37, "max_position_embeddings": 512,
                     "num_attention_heads": 4,
                     # the pipeline reads hidden layers 10, 20 and 30, as in the real model
                     "num_hidden_layers": 30, "num_key_value_heads": 2, "rms_norm_eps": 1e-05,
                     "rope_theta": 1000000000.0, "sliding_window": None,
                     "bos_token_id": ids["<|im_start|>"], "eos_token_id": ids["<|im_end|>"],
                     "pad_token_id": ids["<|endoftext|>"]},
        vision_config={"model_type": "pixtral", "hidden_size": 16, "num_hidden_layers": 1,
                       "num_attention_heads": 4, "intermediate_size": 37, "image_size": 30,
                       "patch_size": 6, "num_channels": 3},
        image_token_index=ids["<|image_pad|>"], image_seq_length=4, vision_feature_layer=-1)
    torch.manual_seed(0)
    text_encoder = Mistral3ForConditionalGeneration(config)
    torch.manual_seed(0)
    vae = AutoencoderKLFlux2(
        sample_size=32, in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(4, 4, 4, 4), layers_per_block=1, latent_channels=4,
        norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False)
    Flux2Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(), text_encoder=text_encoder,
                  tokenizer=tokenizer, transformer=transformer, vae=vae).save_pretrained(path)


PARAMETERS = ParameterSpec(num_inference_steps=50, guidance_scale=4.0, max_input_images=4)

SPEC = FamilySpec(
    name="flux2",
    display_name="FLUX.2",
    pipelines={"text-to-image": "Flux2Pipeline", "edit": "Flux2Pipeline"},
    multi_image=True,
    parameters=PARAMETERS,
    call_kwargs={"max_sequence_length": 512},
    takes_loras=True,
    build_tiny=build_tiny,
    tiny_parameters=tiny_parameters(PARAMETERS),
)
