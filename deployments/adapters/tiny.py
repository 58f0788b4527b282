"""Tiny LoRA repositories for the built-in tiny checkpoints (`tessera/tiny-<family>-lora`), made
with peft on each family's real denoiser and laid out as the Hub holds one: the adapter's
safetensors and a model card naming its base. Tests and `make serve` try adapters on them.

A family has one when its pipelines load LoRAs (`FamilySpec.takes_loras`). Made by the model
registry or a test, never by the ingress: it loads the tiny pipeline and peft.
"""

from __future__ import annotations

from pathlib import Path

from deployments.adapters.sources import WEIGHTS, tiny_lora_path
from deployments.registry import FAMILIES
from deployments.tiny import write_once
from serve_app.core.types import TINY_PREFIX

# attention projections: the layers LoRAs of every diffusers denoiser here touch
TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


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


def ensure_tiny_lora(data_dir: str | Path, family: str) -> Path | None:
    """The family's tiny LoRA repository, written once beside its tiny checkpoint (built in a
    temporary directory and renamed into place); None when its pipelines take no adapters."""
    if not FAMILIES[family].takes_loras:
        return None
    path = tiny_lora_path(data_dir, family)
    if (path / WEIGHTS).exists():
        return path
    from diffusers import DiffusionPipeline

    from deployments.loading import ensure_tiny_checkpoint

    pipe = DiffusionPipeline.from_pretrained(
        str(ensure_tiny_checkpoint(data_dir, FAMILIES[family])))
    return write_once(path, WEIGHTS, lambda tmp: build_tiny_lora(pipe, family, tmp))
