"""A replica's LoRA adapters: its two caches (checked tensors in CPU memory, adapters loaded on
the device beside each base), and the optimizations adapters cannot run under.

Adapters stay unfused: `load_lora_weights` once per adapter and replica, then `set_adapters`
per pipeline call (fusing per request drifts the base's weights, diffusers #5604). A call
without adapters runs the plain base (`disable_lora`). Compiled replicas load adapters into a
fixed set of hot-swap slots (`enable_lora_hotswap`), so a new adapter replaces an old one's
weights in place instead of adding layers that would recompile the denoiser.

Everything here is blocking; torch and diffusers are imported inside functions.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict

from deployments.adapters import files
from deployments.adapters.convert import converted_by
from deployments.adapters.fit import misfits
from serve_app.core.errors import LoraIncompatibleError, LoraInvalidError
from serve_app.core.types import MAX_LORAS, AdapterRef

logger = logging.getLogger("tessera.family")

SLOTS = MAX_LORAS + 1  # hot-swap slots: every adapter of one call (a LoRA model's own too)


def module_shapes(pipe) -> dict[str, dict[str, list[int]]]:
    """The shapes of a loaded pipeline's base weights, whatever adapters it carries."""
    import torch

    shapes = {}
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module):
            shapes[name] = {n.replace(".base_layer", ""): list(p.shape)
                            for n, p in component.named_parameters() if ".lora_" not in n}
    return shapes


class AdapterCache:
    """A replica's adapters: checked tensors by sha256 in CPU memory (LRU, `cpu_bytes`), and per
    loaded base the adapters already on the device (LRU, `device_bytes`)."""

    def __init__(self, cpu_bytes: int, device_bytes: int, hotswap_rank: int | None = None,
                 batch_invariant: bool = False, slots: int = SLOTS,
                 refused: str | None = None):
        self.cpu_bytes = cpu_bytes
        self.device_bytes = device_bytes
        self.hotswap_rank = hotswap_rank
        self.slots = slots
        self.refused = refused  # why this replica takes no adapters at all, if it does not
        self.batch_invariant = batch_invariant
        # sha256 -> (tensors, bytes)
        self._tensors: OrderedDict[str, tuple[dict, int]] = OrderedDict()
        # per base pipeline: adapter name -> (sha256, bytes), least recently used first
        self._loaded: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._shapes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.loads = 0  # adapters loaded onto the device (the benchmark and tests read it)

    def has(self, sha256: str) -> bool:
        """Whether the adapter is checked and held (it becomes the most recently used)."""
        if sha256 not in self._tensors:
            return False
        self._tensors.move_to_end(sha256)
        return True

    def prepare(self, pipe, ref: AdapterRef, data: bytes, param: str, max_rank: int) -> None:
        """Check the adapter's bytes (safetensors only, finite, within the caps), convert it to
        diffusers' naming and check it against the base's modules; keep it by sha256."""
        if self.refused:
            raise LoraIncompatibleError(f"{param}: {self.refused}", param=param)
        info, tensors = files.load(data, param=param, max_bytes=len(data), max_rank=max_rank)
        if info.sha256 != ref.sha256:
            raise LoraInvalidError(f"{param}: the stored adapter changed (sha256 "
                                   f"{info.sha256}, expected {ref.sha256})", param=param)
        if self.hotswap_rank is not None and info.rank > self.hotswap_rank:
            raise LoraIncompatibleError(
                f"{param}: rank {info.rank} is over this model's hot-swap rank "
                f"{self.hotswap_rank} (family setting lora_hotswap_rank)", param=param)
        problems = misfits({k: list(v.shape) for k, v in converted_by(type(pipe), tensors).items()},
                           self.shapes(pipe))
        if problems:
            raise LoraIncompatibleError(f"{param}: the adapter does not fit "
                                        f"{type(pipe).__name__}: " + "; ".join(problems),
                                        param=param)
        # kept as sent: the loader converts it again, the way it converts any adapter
        self._tensors[ref.sha256] = (tensors, info.size)
        while sum(s for _, s in self._tensors.values()) > self.cpu_bytes and len(
                self._tensors) > 1:
            self._tensors.popitem(last=False)

    def shapes(self, pipe) -> dict:
        if pipe not in self._shapes:
            self._shapes[pipe] = module_shapes(pipe)
        return self._shapes[pipe]

    def activate(self, pipe, refs: list[AdapterRef]) -> None:
        """Make `refs` (with their scales) the pipeline's active adapters; none: the plain
        base. Loads what the device does not hold yet, evicting the least recently used."""
        loaded: OrderedDict = self._loaded.setdefault(pipe, OrderedDict())
        if not refs:
            if loaded:
                pipe.disable_lora()
            return
        scales: dict[str, float] = {}
        for ref in refs:  # one adapter named twice: its scales add up
            scales[ref.sha256] = scales.get(ref.sha256, 0.0) + ref.scale
        names = [self._on_device(pipe, loaded, sha, set(scales)) for sha in scales]
        pipe.enable_lora()
        pipe.set_adapters(names, list(scales.values()))

    def _on_device(self, pipe, loaded: OrderedDict, sha: str, wanted: set[str]) -> str:
        for name, (held, _) in loaded.items():
            if held == sha:
                loaded.move_to_end(name)
                return name
        state, size = self._tensors[sha]
        if self.hotswap_rank is not None:
            return self._swap_in(pipe, loaded, sha, state, size, wanted)
        while loaded and sum(s for _, s in loaded.values()) + size > self.device_bytes:
            victim = next((n for n, (h, _) in loaded.items() if h not in wanted), None)
            if victim is None:
                break
            pipe.delete_adapters(victim)
            del loaded[victim]
        name = f"a{sha[:24]}"
        # a copy: the loader pops keys from the dict it is given
        pipe.load_lora_weights(dict(state), adapter_name=name)
        self._after_load(pipe)
        loaded[name] = (sha, size)
        return name

    def _swap_in(self, pipe, loaded: OrderedDict, sha: str, state: dict, size: int,
                 wanted: set[str]) -> str:
        free = [f"slot{i}" for i in range(self.slots) if f"slot{i}" not in loaded]
        if free:  # a slot's first adapter adds its layers (compiled replicas recompile once)
            name = free[0]
            pipe.load_lora_weights(dict(state), adapter_name=name)
        else:
            name = next(n for n, (h, _) in loaded.items() if h not in wanted)
            del loaded[name]
            pipe.load_lora_weights(dict(state), adapter_name=name, hotswap=True)
        self._after_load(pipe)
        loaded[name] = (sha, size)
        return name

    def _after_load(self, pipe) -> None:
        self.loads += 1
        if self.batch_invariant:  # the new LoRA layers run per sample like the base's
            from deployments.invariance import make_batch_invariant

            make_batch_invariant(pipe)


def refusal(opts) -> str | None:
    """Optimizations adapters cannot run under: fused QKV projections bypass the adapted
    to_q/to_k/to_v layers, and a base quantized after loading (torchao) does not take LoRA
    layers (diffusers #10621, #11752)."""
    if opts.fuse_qkv:
        return ("this model's replicas fuse QKV projections (optimization.fuse_qkv), which "
                "adapters cannot run under")
    if opts.quantization:
        return (f"this model's replicas are quantized ({opts.quantization}), which adapters "
                "cannot run under")
    return None


def enable_hotswap(pipe, rank: int) -> bool:
    """Before a compiled replica's first adapter and before compiling: adapters of up to `rank`
    are later swapped in place. Only where the pipeline takes adapters."""
    if not hasattr(type(pipe), "enable_lora_hotswap"):
        return False
    pipe.enable_lora_hotswap(target_rank=rank)
    return True

