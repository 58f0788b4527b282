"""Tiny random-weight components for the built-in `tessera/tiny-<family>` checkpoints.

They follow the dummy components of diffusers' own pipeline tests, with tokenizers built here
(the tests download theirs) so a checkpoint can be written with no network. Every builder seeds
torch first: the same code writes the same weights on every machine.
"""

from __future__ import annotations

import os
import shutil
import string
import tempfile
from pathlib import Path
from typing import Callable

_CHARS = [c for c in string.printable if not c.isspace()]


def checkpoint_path(data_dir: str | Path, family: str) -> Path:
    """Where the family's tiny checkpoint is written (its tiny LoRA repository beside it)."""
    return Path(data_dir) / "tiny" / family


def write_once(path: Path, marker: str, build: Callable[[Path], None]) -> Path:
    """`path`, written by `build` once (it exists when `path / marker` does). Built in a
    temporary directory beside it and renamed into place, so a replica that races another
    (or is killed half-way) never leaves a half-written directory behind."""
    if (path / marker).exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / marker).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def clip_tokenizer(max_length: int = 77):
    """A character-level CLIP BPE tokenizer: every printable character is a token."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in _CHARS:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def t5_tokenizer(max_length: int = 512):
    """A character-level T5 (unigram) tokenizer."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in _CHARS] + [("\u2581" + c, -3.5) for c in _CHARS]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


def clip_text_encoder(vocab_size: int, with_projection: bool = False, hidden_size: int = 32):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1,
                            hidden_size=hidden_size, intermediate_size=37,
                            layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=2,
                            vocab_size=vocab_size, hidden_act="gelu", projection_dim=32)
    torch.manual_seed(0)
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(config)


def t5_encoder(vocab_size: int, d_model: int = 32):
    import torch
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    return T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=37,
                                   num_layers=2, num_heads=4, relative_attention_num_buckets=8,
                                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))


def vae_kl(latent_channels: int = 4, **extra):
    """An AutoencoderKL with the real 8x downsampling (four blocks), four channels wide."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(sample_size=32, in_channels=3, out_channels=3,
                         block_out_channels=(4, 4, 4, 4),
                         down_block_types=["DownEncoderBlock2D"] * 4,
                         up_block_types=["UpDecoderBlock2D"] * 4,
                         layers_per_block=1, latent_channels=latent_channels, norm_num_groups=1,
                         **extra)


QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                       "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def qwen2_tokenizer():
    """A byte-level Qwen2 BPE tokenizer with no merges (every byte a token) and Qwen's specials."""
    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    for token in QWEN_SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], model_max_length=2048)
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL_TOKENS[1:]})
    tok.chat_template = QWEN_CHAT_TEMPLATE
    return tok


def qwen25_vl_encoder(tokenizer, hidden_size: int = 16, mrope_section=(1, 1, 2)):
    """A tiny Qwen2.5-VL whose special-token ids are those of `tokenizer`."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": hidden_size, "intermediate_size": hidden_size,
                     "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
                     "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
                     "vocab_size": len(tokenizer),
                     "rope_scaling": {"mrope_section": list(mrope_section),
                                      "rope_type": "default", "type": "default"},
                     "rope_theta": 1000000.0},
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                       "out_hidden_size": hidden_size},
        hidden_size=hidden_size, vocab_size=len(tokenizer),
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration(config)


def qwen2_vl_processor(tokenizer):
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    # the processor insists on a real video processor (torchvision-backed), though image
    # pipelines never give it a video
    video_processor = Qwen2VLVideoProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                            video_processor=video_processor, chat_template=QWEN_CHAT_TEMPLATE)


def qwen_image_vae(z_dim: int = 16, base_dim: int = 16):
    """Narrow on purpose: Qwen-Image-Edit VAE-encodes its input at about 1 MP whatever the
    output size, which took the 96-wide VAE 27 s on two cores and this one 3 s."""
    import torch
    from diffusers import AutoencoderKLQwenImage

    torch.manual_seed(0)
    return AutoencoderKLQwenImage(base_dim=base_dim, z_dim=z_dim, dim_mult=[1, 2, 4, 4],
                                  num_res_blocks=1, temperal_downsample=[False, True, True],
                                  latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim)


def flux_components(in_channels: int = 16, out_channels: int | None = None) -> dict:
    """Tiny FLUX.1 components; shared by the Fill and Kontext families."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

    tokenizer, tokenizer_2 = clip_tokenizer(), t5_tokenizer()
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=in_channels, out_channels=out_channels, num_layers=1,
        num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
    return dict(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae_kl(latent_channels=4, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=clip_text_encoder(len(tokenizer)), tokenizer=tokenizer,
        text_encoder_2=t5_encoder(len(tokenizer_2)), tokenizer_2=tokenizer_2,
        transformer=transformer)


def qwen_image_components(z_dim: int = 16) -> dict:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel

    tokenizer = qwen2_tokenizer()
    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=z_dim * 4, out_channels=z_dim, num_layers=2,
        attention_head_dim=16, num_attention_heads=3, joint_attention_dim=16,
        guidance_embeds=False, axes_dims_rope=(8, 4, 4))
    return dict(transformer=transformer, vae=qwen_image_vae(z_dim),
                scheduler=FlowMatchEulerDiscreteScheduler(), tokenizer=tokenizer,
                text_encoder=qwen25_vl_encoder(tokenizer))
