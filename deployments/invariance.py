"""Batch-invariant execution: an image's bytes must not depend on what it was batched with.

Math libraries pick kernels by shape, so a sample's values can depend on the batch around it:

- Matrix products and convolutions: MKL on CPU computes a [1, K] x [K, N] product with another
  reduction order than the same row inside a [2, K] x [K, N] product (measured on the tiny FLUX:
  4e-6 after four steps); cuBLAS picks its kernels (and split-K) by shape too.
- Normalisations and row reductions: group norm's CPU kernel splits its work by batch size; a
  long row's sum is split across threads by the tensor's total size; CUDA's generic reduction
  picks its block shape from the number of rows.
- Element-wise transcendental functions on CPU (silu, gelu, sigmoid, softplus, exp, ...): the
  vectorised body of a kernel (SLEEF, 16 lanes with AVX-512, 8 with AVX2) and its scalar tail
  compute different bits, and a tensor larger than the grain size is cut into per-thread chunks
  with a tail each. Where a sample's elements fall, body or tail, depends on the batch size and
  on its position in the batch (seen on an Intel AVX-512 machine in PixArt-Sigma's timestep
  embedder, [2, 24] alone against [8, 24] batched; seen here for gelu-tanh, sigmoid, silu, mish
  and softplus under AVX2 and AVX-512, never under ATEN_CPU_CAPABILITY=default).

The cure for all three is the same: each such kernel call gets the shape it would have had with a
batch of one. Two mechanisms apply it:

1. `make_batch_invariant(pipe)` patches the models' linear, convolution and normalisation layers
   to run once per sample along the batch dimension. This holds on every device.
2. `invariant_execution(device)` is a torch function mode, active on CPU during the pipeline call,
   that runs the position-sensitive functions once per sample wherever they are called: inside
   activation modules and in functional code that no module wraps (timestep embeddings' sin/cos,
   Z-Image's functional silu and tanh, a custom RMSNorm's mean). CUDA's element-wise kernels apply
   the same scalar function to every element, so the mode stays off there and costs nothing.

Exact arithmetic (+, -, *, /, sqrt, copies) gives the same bits wherever an element falls, and
attention (SDPA) and batched matmul compute each batch entry alone already (checked per
capability); neither is split. What batching saves is kept: one denoising loop, one scheduler
step, one text-encoder and VAE pass for the whole batch, with the large products still large,
since one sample of a real model is thousands of rows.

"Per sample" means per index of dimension 0: a batched tensor is batch-first in these models; a
tensor that is not batched at all is split the same way whatever the batch, so it stays the same
too. A tensor whose batch sits on another dimension (none is known in the families' denoisers) is
not made invariant by this; the tests compare every family alone against batched to catch one.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

_PATCHED = "_tessera_batch_invariant"


def _cat(parts: list) -> Any:
    import torch

    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], tuple):  # var_mean, std_mean, ...
        return tuple(torch.cat(p) for p in zip(*parts, strict=True))
    return torch.cat(parts)


def _per_sample(forward, unbatched_dims: int):
    import torch

    def run(x, *args, **kwargs):
        if not torch.is_tensor(x) or x.dim() <= unbatched_dims:
            return forward(x, *args, **kwargs)
        # contiguous, a batch of one included: kernels also pick their path by strides (an
        # element-wise kernel runs a strided input through its scalar loop), and a sample
        # sliced from a permuted batch has other strides than the same sample made alone
        return _cat([forward(x[i:i + 1].contiguous(), *args, **kwargs)
                     for i in range(x.shape[0])])

    return run


def _is_norm_leaf(module) -> bool:
    """RMSNorm/LayerNorm classes of diffusers and transformers (T5LayerNorm, Qwen2RMSNorm, ...):
    they reduce each row in Python (`pow(2).mean(-1)`), a reduction sized by the whole batch."""
    name = type(module).__name__
    return (name.endswith(("RMSNorm", "LayerNorm")) and not any(True for _ in module.children()))


def _unbatched_dims(module) -> int | None:
    """How many dimensions one sample of this module's input has; None: leave it alone."""
    import torch

    nn = torch.nn
    if isinstance(module, nn.Linear):
        return 1
    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
        return 2
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return 3
    if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
        return 4
    if isinstance(module, nn.GroupNorm):  # always batched: [N, C, *]
        return 1
    if isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
        return len(module.normalized_shape)
    if _is_norm_leaf(module):
        return 1
    return None


def make_batch_invariant(pipe: Any) -> Any:
    """Patch the linear, convolution and normalisation layers of the pipeline's models in place
    so each runs once per sample (idempotent)."""
    import torch

    for component in pipe.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        for module in component.modules():
            dims = _unbatched_dims(module)
            if dims is None or getattr(module, _PATCHED, False):
                continue
            module.forward = _per_sample(module.forward, dims)
            setattr(module, _PATCHED, True)
    return pipe


# ------------------------------------------------------------------ the CPU function mode

def _dims_exclude_batch(dim, ndim: int) -> bool:
    """A reduction over `dim` leaves dimension 0 alone (None: everything is reduced)."""
    if dim is None:
        return False
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    return all(isinstance(d, int) and d % ndim != 0 for d in dims)


def _unary(args, kwargs) -> bool:
    # only the input is a tensor: every other argument is a setting, shared by all samples
    return not any(_is_tensor(a) for a in args[1:]) and not any(
        _is_tensor(v) for v in kwargs.values())


def _along_dim(args, kwargs) -> bool:
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    return _unary(args, kwargs) and _dims_exclude_batch(dim, args[0].dim())


def _layer_norm(args, kwargs) -> bool:  # (input, normalized_shape, weight, bias, eps)
    shape = kwargs.get("normalized_shape", args[1] if len(args) > 1 else ())
    return args[0].dim() > len(tuple(shape))


def _always(args, kwargs) -> bool:  # group norm, linear: the weights are not batched
    return True


def _conv(args, kwargs) -> bool:  # batched input: as many dimensions as the weight
    weight = kwargs.get("weight", args[1] if len(args) > 1 else None)
    return _is_tensor(weight) and args[0].dim() == weight.dim()


def _is_tensor(value) -> bool:
    import torch

    return torch.is_tensor(value)


def _rules() -> dict[Callable, Callable[[tuple, dict], bool]]:
    """Function -> whether a call splits along dim 0. Position-sensitive ones only."""
    import torch
    import torch.nn.functional as F

    T = torch.Tensor
    rules: dict[Callable, Callable] = {}
    transcendental = ["sigmoid", "tanh", "exp", "exp2", "expm1", "log", "log2", "log10",
                      "log1p", "sin", "cos", "tan", "sinh", "cosh", "asin", "acos", "atan",
                      "erf", "erfc", "erfinv", "rsqrt", "pow", "float_power", "logit", "sinc"]
    for name in transcendental:
        for owner in (torch, T):
            if hasattr(owner, name):
                rules[getattr(owner, name)] = _unary
    for fn in (T.__pow__, T.__rpow__, torch.special.expit, torch.special.erf,
               F.silu, F.gelu, F.mish, F.softplus, F.elu, F.selu, F.celu, F.hardswish,
               F.logsigmoid, F.sigmoid, F.tanh, F.softsign, F.tanhshrink):
        rules[fn] = _unary
    for name in ("softmax", "log_softmax", "mean", "sum", "var", "std", "var_mean", "std_mean",
                 "logsumexp", "prod", "cumsum", "nansum", "nanmean"):
        for owner in (torch, T):
            if hasattr(owner, name):
                rules[getattr(owner, name)] = _along_dim
    rules[F.softmax] = rules[F.log_softmax] = _along_dim
    rules[F.layer_norm] = rules[F.rms_norm] = _layer_norm
    rules[F.group_norm] = rules[F.linear] = _always
    for fn in (F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d,
               F.conv_transpose3d):
        rules[fn] = _conv
    return rules


_RULES: dict | None = None


def _mode_class():
    from torch.overrides import TorchFunctionMode

    class PerSampleMode(TorchFunctionMode):
        """Runs the functions of `_rules()` once per index of dimension 0."""

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            rule = _RULES.get(func)
            x = args[0] if args else None
            if rule is None or not _is_tensor(x) or x.dim() < 2 or not rule(args, kwargs):
                return func(*args, **kwargs)
            # the mode is off inside this method, so these calls run the real kernels; a
            # batch of one is made contiguous too (see _per_sample)
            inplace = kwargs.get("inplace", False)
            if inplace:
                kwargs = {**kwargs, "inplace": False}
            out = _cat([func(x[i:i + 1].contiguous(), *args[1:], **kwargs)
                        for i in range(x.shape[0])])
            return x.copy_(out) if inplace else out

    return PerSampleMode


@contextlib.contextmanager
def invariant_execution(device: str) -> Iterator[None]:
    """Run the enclosed pipeline call batch-invariant on `device` (see the module docstring).
    Torch function modes are per thread: enter this in the thread that runs the pipeline."""
    global _RULES
    if device != "cpu":
        yield
        return
    if _RULES is None:
        _RULES = _rules()
    with _mode_class()():
        yield
