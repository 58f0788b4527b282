"""Loading a model in a family server: the device, the source, the pipeline.

A model source (`core.models.ModelSource`) is a built-in tiny id (`tessera/tiny-<family>`,
written on first use with `save_pretrained`), a local diffusers directory, or a Hugging Face
repo id, with the transformer weights of a fine-tune to load over it where it has one.
Everything here is blocking: the server runs it in a thread. torch and diffusers are imported
inside functions.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from deployments import tiny
from deployments.adapters.cache import enable_hotswap
from deployments.invariance import make_batch_invariant
from deployments.optimize import optimize_pipeline
from deployments.registry import FAMILIES
from serve_app.core.config import OptimizationSettings
from serve_app.core.types import FamilySpec, ModelSource, ParameterSpec

logger = logging.getLogger("tessera.family")

# a fine-tune's transformer weights, the file its repository or directory holds
TRANSFORMER_FILE = "diffusion_pytorch_model.safetensors"


def quiet_libraries() -> None:
    """Progress bars from diffusers/transformers/hub flood replica logs with one line per step."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()


def pick_device(preference: str) -> tuple[str, Any]:
    import torch

    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return "cuda", torch.bfloat16
    return "cpu", torch.float32


def explain_build_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    try:
        from transformers.utils import is_torchvision_available
    except ImportError:
        return text
    if not is_torchvision_available() and ("VIDEO_PROCESSOR" in text or "orchvision" in text):
        return ("its Qwen2VLProcessor needs torchvision, which is not installed "
                f"(transformers builds that processor only with it): {text}")
    return text


def ensure_tiny_checkpoint(data_dir: str | Path, spec: FamilySpec) -> Path:
    """Write the family's tiny checkpoint once; later calls return the existing one."""
    path = tiny.checkpoint_path(data_dir, spec.name)
    if (path / spec.index_file).exists():
        return path
    tiny.write_once(path, spec.index_file, lambda tmp: spec.build_tiny(str(tmp)))
    logger.info("built tiny %s checkpoint at %s", spec.name, path)
    return path


def resolve_source(source: ModelSource, data_dir: str | Path) -> tuple[str, str | None]:
    """(what `from_pretrained` receives, a transformer weights file to load over it or None)."""
    family = source.tiny_family
    base = str(ensure_tiny_checkpoint(data_dir, FAMILIES[family])) if family else source.base
    transformer = source.transformer
    if transformer is None:
        return base, None
    if Path(transformer).is_dir():
        return base, str(Path(transformer) / TRANSFORMER_FILE)
    from huggingface_hub import hf_hub_download

    return base, hf_hub_download(transformer, TRANSFORMER_FILE)


def source_parameters(spec: FamilySpec, source: ModelSource) -> ParameterSpec:
    """A model's defaults and bounds: a tiny checkpoint's are small."""
    return spec.tiny_parameters if source.tiny_family else spec.parameters


def load_pipeline(source: ModelSource, data_dir: str, device: str, dtype, batch_invariant: bool,
                  opts: OptimizationSettings | None = None, allow_pickle: bool = False,
                  hotswap_rank: int | None = None, spec: FamilySpec | None = None):
    """The model's own pipeline class (from model_index.json), on the device, optimized per
    the family's (device-resolved) settings; a family with a loader of its own (`spec.load`:
    a transformers upscaler) loads through it. With `hotswap_rank` (compiled replicas) LoRA
    adapters are later swapped in place, so hot-swapping is enabled before compiling."""
    from diffusers import DiffusionPipeline

    started = time.perf_counter()
    path, transformer_weights = resolve_source(source, data_dir)
    if spec is not None and spec.load is not None:
        pipe = spec.load(path, dtype)  # safetensors only, whatever allow_pickle says
    else:
        # use_safetensors: a component with only pickle weights fails to load instead of
        # being unpickled (a tenant's checkpoint may be hostile), unless the operator allows
        # pickles
        pipe = DiffusionPipeline.from_pretrained(
            path, dtype=dtype, use_safetensors=None if allow_pickle else True)
    if transformer_weights:
        from safetensors.torch import load_file

        # strict: a fine-tune whose tensors do not match the base must fail the load
        pipe.transformer.load_state_dict(load_file(transformer_weights), strict=True)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    if batch_invariant:
        make_batch_invariant(pipe)
    if hotswap_rank is not None:
        enable_hotswap(pipe, hotswap_rank)
    applied = optimize_pipeline(pipe, opts, device) if opts is not None else {}
    logger.info("loaded %s (%s) in %.2fs %s", source, type(pipe).__name__,
                time.perf_counter() - started, applied or "")
    return pipe


class PipelineCache:
    """A family's other pipelines (img2img, inpaint, ...) built on a loaded model's components."""

    def __init__(self, spec: FamilySpec):
        self.spec = spec
        self._pipes: dict[tuple[int, str], Any] = {}

    def pipeline_for(self, base, task: str):
        import diffusers

        wanted = self.spec.pipelines[task]
        if type(base).__name__ == wanted:
            return base
        key = (id(base), wanted)
        if key not in self._pipes:
            self._pipes[key] = getattr(diffusers, wanted).from_pipe(base)
        return self._pipes[key]
