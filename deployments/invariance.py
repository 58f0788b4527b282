"""Batch-invariant execution: an image's bytes must not depend on what it was batched with.

Matrix-multiply libraries pick kernels by shape. MKL on CPU, for one, computes a [1, K] x [K, N]
product with a different reduction order than the same row inside a [2, K] x [K, N] product, so
an image made alone and the same seed made in a batch of two drift apart by a few ULPs per layer
and end up as different PNG bytes (measured on the tiny FLUX: 4e-6 after four steps).

The fix is to make each kernel call's shape independent of the batch: the layers whose kernels
reduce across a tensor's rows (linear, convolution, group norm) run once per sample along the batch
dimension. Every call then has the shape it would have had with a batch of one, whatever the
batch size, and the same inputs through the same kernel give the same bits. What batching saves
is kept: one denoising loop, one scheduler, one text-encoder and VAE pass over the whole batch.
The cost is more, smaller kernel calls in those layers; on a real model one sample is already
thousands of rows, so the products stay large.
"""

from __future__ import annotations

from typing import Any

_PATCHED = "_tessera_batch_invariant"


def _per_sample(forward, unbatched_dims: int):
    import torch

    def run(x, *args, **kwargs):
        if not torch.is_tensor(x) or x.dim() <= unbatched_dims:
            return forward(x, *args, **kwargs)
        # contiguous: a kernel may also pick its path by strides, and a sample sliced from a
        # permuted batch has other strides than the same sample made alone
        parts = [forward(x[i:i + 1].contiguous(), *args, **kwargs) for i in range(x.shape[0])]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    return run


def make_batch_invariant(pipe: Any) -> Any:
    """Patch every linear and convolution layer of the pipeline's models in place."""
    import torch

    # dims of one sample: a linear layer's input is [..., features]; a conv's [C, *spatial];
    # group norm always has a batch dimension (its CPU kernel splits the work by batch size)
    kinds = {torch.nn.Linear: 1, torch.nn.Conv1d: 2, torch.nn.Conv2d: 3, torch.nn.Conv3d: 4,
             torch.nn.GroupNorm: 1}
    for component in pipe.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        for module in component.modules():
            dims = next((d for k, d in kinds.items() if isinstance(module, k)), None)
            if dims is None or getattr(module, _PATCHED, False):
                continue
            module.forward = _per_sample(module.forward, dims)
            setattr(module, _PATCHED, True)
    return pipe
