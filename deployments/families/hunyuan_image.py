"""HunyuanImage-2.1 (diffusers format) through HunyuanImagePipeline."""

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
        AdaptiveProjectedMixGuidance,
        AutoencoderKLHunyuanImage,
        FlowMatchEulerDiscreteScheduler,
        HunyuanImagePipeline,
        HunyuanImageTransformer2DModel,
    )
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    tokenizer = tiny.qwen2_tokenizer()
    torch.manual_seed(0)
    transformer = HunyuanImageTransformer2DModel(
        in_channels=4, out_channels=4, num_attention_heads=4, attention_head_dim=8,
        num_layers=1, num_single_layers=1, num_refiner_layers=1, patch_size=(1, 1),
        guidance_embeds=False, text_embed_dim=32, text_embed_2_dim=32, rope_axes_dim=(4, 4))
    torch.manual_seed(0)
    vae = AutoencoderKLHunyuanImage(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64, 64, 64),
        layers_per_block=1, scaling_factor=0.476986, spatial_compression_ratio=8,
        sample_size=128)
    torch.manual_seed(0)
    text_encoder_2 = T5EncoderModel(T5Config(
        d_model=32, d_kv=4, d_ff=16, num_layers=2, num_heads=2,
        relative_attention_num_buckets=8, relative_attention_max_distance=32, vocab_size=384,
        feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_encoder_decoder=False,
        use_cache=False, tie_word_embeddings=False))
    HunyuanImagePipeline(
        transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder=tiny.qwen25_vl_encoder(tokenizer, hidden_size=32, mrope_section=(2, 2, 4)),
        tokenizer=tokenizer, text_encoder_2=text_encoder_2, tokenizer_2=ByT5Tokenizer(),
        guider=AdaptiveProjectedMixGuidance(adaptive_projected_guidance_start_step=2),
        ocr_guider=AdaptiveProjectedMixGuidance(adaptive_projected_guidance_start_step=3),
    ).save_pretrained(path)


PARAMETERS = ParameterSpec(num_inference_steps=50, guidance_scale=None, negative_prompt=True,
                           width=2048, height=2048, max_side=3072, max_pixels=3072 * 3072)

SPEC = FamilySpec(
    name="hunyuan-image",
    display_name="HunyuanImage-2.1",
    pipelines={"text-to-image": "HunyuanImagePipeline"},
    # guidance lives in the checkpoint's guider components, not in a call argument
    guidance_kwarg=None,
    parameters=PARAMETERS,
    build_tiny=build_tiny,
    tiny_parameters=tiny_parameters(PARAMETERS),
)
