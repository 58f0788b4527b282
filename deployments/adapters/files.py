"""LoRA adapter files, read by Tessera before anything reaches diffusers.

Only safetensors: an 8-byte little-endian header length, a JSON header (each tensor's dtype,
shape and byte range), then the bytes. The header is parsed here by hand, with caps on its
size, on the tensor count and on the rank, so nothing a tenant sends is ever unpickled (a
`.bin`, `.ckpt` or `.pt` is a pickle, or a zip of one, whatever the file is called) and no
library sees a file whose layout was not checked first. Values are then checked to be finite.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct

from pydantic import BaseModel

from serve_app.core.errors import (
    LoraInvalidError,
    LoraUnsupportedFormatError,
    PayloadTooLargeError,
)

FLOAT_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
MAX_HEADER_BYTES = 16 * 1024 * 1024  # safetensors allows 100 MB; an adapter needs far less
# the two matrices of a LoRA layer, in the formats diffusers converts (diffusers/peft:
# lora_A/lora_B; kohya: lora_down/lora_up); the rank is lora_A's (lora_down's) first dimension
DOWN = re.compile(r"\.(lora_A|lora_down)(\.[^.]+)?\.weight$")
UP = re.compile(r"\.(lora_B|lora_up)(\.[^.]+)?\.weight$")


class AdapterInfo(BaseModel):
    """What an adapter file holds, as validation reports it."""

    sha256: str
    size: int
    tensors: int
    rank: int
    target_modules: list[str]
    dtypes: list[str]


def inspect(data: bytes, *, param: str, max_bytes: int, max_tensors: int = 4096,
            max_rank: int = 256) -> AdapterInfo:
    """The adapter's layout, checked; every problem is a typed 4xx naming `param`."""
    if len(data) > max_bytes:
        raise PayloadTooLargeError(f"{param}: the adapter is {len(data)} bytes; the limit is "
                                   f"{max_bytes}", param=param)
    header = _header(data, param)
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    if len(entries) > max_tensors:
        raise LoraInvalidError(f"{param}: {len(entries)} tensors, more than the {max_tensors} "
                               "an adapter may hold", param=param)
    body = len(data) - 8 - struct.unpack("<Q", data[:8])[0]
    spans = []
    for name, entry in entries.items():
        dtype, shape, offsets = _entry(name, entry, param)
        start, end = offsets
        if not 0 <= start <= end <= body:
            raise LoraInvalidError(f"{param}: tensor {name!r} lies past the end of the file "
                                   "(truncated?)", param=param)
        if end - start != math.prod(shape) * FLOAT_DTYPES[dtype]:
            raise LoraInvalidError(f"{param}: tensor {name!r} does not have the size its shape "
                                   "says", param=param)
        spans.append((start, end))
    spans.sort()
    if any(a[1] > b[0] for a, b in zip(spans, spans[1:], strict=False)):
        raise LoraInvalidError(f"{param}: tensors overlap in the file", param=param)
    downs = {n: e["shape"] for n, e in entries.items() if DOWN.search(n)}
    if not downs or not any(UP.search(n) for n in entries):
        raise LoraInvalidError(f"{param}: no LoRA tensors (lora_A/lora_B or lora_down/lora_up)",
                               param=param)
    rank = max(shape[0] if len(shape) == 2 else 0 for shape in downs.values())
    if rank == 0:
        raise LoraInvalidError(f"{param}: LoRA matrices must be two-dimensional and of rank 1 "
                               "or more", param=param)
    if rank > max_rank:
        raise LoraInvalidError(f"{param}: rank {rank}, more than the {max_rank} allowed",
                               param=param)
    return AdapterInfo(
        sha256=hashlib.sha256(data).hexdigest(), size=len(data), tensors=len(entries),
        rank=rank, target_modules=sorted({DOWN.sub("", n) for n in downs}),
        dtypes=sorted({e["dtype"] for e in entries.values()}))


def header_shapes(data: bytes) -> dict[str, list[int]]:
    """Tensor name -> shape of a file `inspect` has passed (its header alone)."""
    header = _header(data, "adapter")
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def load(data: bytes, *, param: str, max_bytes: int, max_tensors: int = 4096,
         max_rank: int = 256) -> tuple[AdapterInfo, dict]:
    """The checked adapter's tensors (torch), each one finite: what `load_lora_weights` is
    given, as a state dict, so diffusers never opens a file itself."""
    import torch
    from safetensors.torch import load as load_safetensors

    info = inspect(data, param=param, max_bytes=max_bytes, max_tensors=max_tensors,
                   max_rank=max_rank)
    try:
        tensors = load_safetensors(data)
    except Exception as exc:  # the layout passed: anything left is a corrupt file
        raise LoraInvalidError(f"{param}: the adapter could not be read: {exc}"[:300],
                               param=param) from None
    for name, tensor in tensors.items():
        if not bool(torch.isfinite(tensor).all()):
            raise LoraInvalidError(f"{param}: tensor {name!r} holds NaN or infinite values",
                                   param=param)
    return info, tensors


def _header(data: bytes, param: str) -> dict:
    # Decided by structure alone: a pickle, or torch's zip of one, has no length-prefixed JSON
    # header, so it is refused here and never read further (nothing here can unpickle).
    unsupported = LoraUnsupportedFormatError(
        f"{param}: not a safetensors file (pickled weights such as .bin, .ckpt or .pt are never "
        "loaded); convert the adapter to safetensors", param=param)
    if len(data) < 10 or data[8:9] != b"{":
        raise unsupported
    (length,) = struct.unpack("<Q", data[:8])
    if length > MAX_HEADER_BYTES:
        raise unsupported
    if length > len(data) - 8:
        raise LoraInvalidError(f"{param}: the safetensors header runs past the end of the file "
                               "(truncated?)", param=param)
    try:
        header = json.loads(data[8:8 + length])
    except (ValueError, UnicodeDecodeError):
        raise LoraInvalidError(f"{param}: the safetensors header is not valid JSON",
                               param=param) from None
    if not isinstance(header, dict):
        raise LoraInvalidError(f"{param}: the safetensors header is not an object", param=param)
    return header


def _entry(name: str, entry, param: str) -> tuple[str, list[int], list[int]]:
    if not isinstance(entry, dict):
        raise LoraInvalidError(f"{param}: tensor {name!r} is not described", param=param)
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in FLOAT_DTYPES:
        raise LoraInvalidError(f"{param}: tensor {name!r} is {dtype}; adapters hold floating "
                               "point tensors only (F16, BF16, F32, F64)", param=param)
    if (not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape)
            or not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)):
        raise LoraInvalidError(f"{param}: tensor {name!r} has a malformed shape or byte range",
                               param=param)
    return dtype, shape, offsets
