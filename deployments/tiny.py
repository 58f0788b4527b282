"""Tiny random-weight components for the built-in `tessera/tiny-<family>` checkpoints.

They follow the dummy components of diffusers' own pipeline tests, with tokenizers built here
(the tests download theirs) so a checkpoint can be written with no network. Every builder seeds
torch first: the same code writes the same weights on every machine.
"""

from __future__ import annotations

import string

_CHARS = [c for c in string.printable if not c.isspace()]


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
