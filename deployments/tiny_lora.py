"""Tiny LoRA repositories for the built-in tiny checkpoints (`tessera/tiny-<family>-lora`), made
with peft on each family's real denoiser and laid out as the Hub holds one: the adapter's
safetensors and a model card naming its base. Tests and `make serve` try adapters on them.

A family has one when its diffusers pipeline loads LoRAs (`load_lora_weights`): that is read
from diffusers itself, not kept as a flag per family.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from deployments.registry import FAMILIES, TINY_PREFIX

WEIGHTS = "pytorch_lora_weights.safetensors"
LORA_SUFFIX = "-lora"  # tessera/tiny-<family>-lora
# attention projections: the layers LoRAs of every diffusers denoiser here touch
TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def loads_loras(pipe) -> bool:
    return hasattr(type(pipe), "load_lora_weights") and hasattr(type(pipe), "save_lora_weights")


def denoiser(pipe) -> tuple[str, object]:
    """(the save_lora_weights argument prefix, the module): a transformer, or SDXL's UNet."""
    if getattr(pipe, "transformer", None) is not None:
        return "transformer", pipe.transformer
    return "unet", pipe.unet


def build_tiny_lora(pipe, family: str, out_dir: str | Path, seed: int = 0,
                    rank: int = 4) -> Path:
    """Write a random rank-`rank` adapter over the pipeline's attention projections. Both LoRA
    matrices are random (`init_lora_weights=False`), so the adapter visibly changes an image;
    the pipeline's own weights are left as they were."""
    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    prefix, module = denoiser(pipe)
    names = {name.rsplit(".", 1)[-1] if not name.endswith("to_out.0") else "to_out.0"
             for name, _ in module.named_modules()}
    targets = [t for t in TARGETS if t in names]
    torch.manual_seed(seed)
    module.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                  target_modules=targets), adapter_name="tiny")
    layers = get_peft_model_state_dict(module, adapter_name="tiny")
    module.delete_adapters("tiny")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(str(out), **{f"{prefix}_lora_layers": layers},
                                 weight_name=WEIGHTS)
    (out / "README.md").write_text(
        f"---\nbase_model: {TINY_PREFIX}{family}\nlibrary_name: diffusers\n"
        f"tags: [lora, tessera-tiny]\n---\n# Tiny {family} LoRA\n\nRandom rank-{rank} adapter "
        "for tests: it changes every image, it draws nothing.\n")
    return out


def tiny_lora_family(repo_id: str) -> str | None:
    """The family of a built-in tiny LoRA id (`tessera/tiny-<family>-lora`), or None."""
    if not (repo_id.startswith(TINY_PREFIX) and repo_id.endswith(LORA_SUFFIX)):
        return None
    family = repo_id[len(TINY_PREFIX):-len(LORA_SUFFIX)]
    return family if family in FAMILIES else None


def ensure_tiny_lora(data_dir: str | Path, family: str) -> Path | None:
    """The family's tiny LoRA repository, written once beside its tiny checkpoint (built in a
    temporary directory and renamed into place); None when its pipeline takes no adapters."""
    from diffusers import DiffusionPipeline

    from deployments.loading import ensure_tiny_checkpoint

    base = ensure_tiny_checkpoint(data_dir, FAMILIES[family])
    path = base.parent / f"{family}{LORA_SUFFIX}"
    if (path / WEIGHTS).exists():
        return path
    pipe = DiffusionPipeline.from_pretrained(str(base))
    if not loads_loras(pipe):
        return None
    tmp = Path(tempfile.mkdtemp(prefix=f".{family}-lora-", dir=base.parent))
    try:
        build_tiny_lora(pipe, family, tmp)
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / WEIGHTS).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
