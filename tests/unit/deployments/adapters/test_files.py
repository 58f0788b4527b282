"""Adapter files as Tessera reads them: safetensors only, parsed before anything else sees
them; pickles are refused by their structure and never unpickled."""

from __future__ import annotations

import io
import json
import pickle
import struct

import pytest
import torch
from safetensors.torch import save

from deployments.adapters.files import load
from serve_app.core.errors import LoraInvalidError, LoraUnsupportedFormatError, PayloadTooLargeError

MB = 1024 * 1024


def adapter(rank: int = 4, dtype=torch.float32, layers=("to_q", "to_k")) -> dict:
    torch.manual_seed(0)
    out = {}
    for layer in layers:
        base = f"transformer.transformer_blocks.0.attn.{layer}"
        out[f"{base}.lora_A.weight"] = torch.randn(rank, 32, dtype=dtype)
        out[f"{base}.lora_B.weight"] = torch.randn(32, rank, dtype=dtype)
    return out


def check(data: bytes, **caps):
    return load(data, param="loras[0].path", max_bytes=caps.pop("max_bytes", 10 * MB), **caps)


def test_a_peft_style_adapter_is_read_with_its_rank_targets_and_hash():
    data = save(adapter(rank=4))
    info, tensors = check(data)
    assert info.rank == 4 and info.tensors == 4 and info.size == len(data)
    assert info.target_modules == ["transformer.transformer_blocks.0.attn.to_k",
                                   "transformer.transformer_blocks.0.attn.to_q"]
    assert len(info.sha256) == 64 and info.dtypes == ["F32"]
    assert torch.equal(tensors["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"],
                       adapter()["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"])
    kohya = {k.replace("lora_A", "lora_down").replace("lora_B", "lora_up"): v
             for k, v in adapter(dtype=torch.bfloat16).items()}
    assert check(save(kohya))[0].dtypes == ["BF16"]


class LeavesAFile:
    """Unpickling this writes a file: proof that nothing was unpickled when none appears."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("maker", ["torch_zip", "raw_pickle", "text", "empty"])
def test_pickles_and_other_formats_are_refused_and_never_unpickled(tmp_path, maker):
    marker = tmp_path / "unpickled"
    payload = {"weights": LeavesAFile(str(marker))}
    if maker == "torch_zip":  # what a .bin / .pt / .ckpt is, whatever it is named
        buf = io.BytesIO()
        torch.save(payload, buf)
        data = buf.getvalue()
    elif maker == "raw_pickle":
        data = pickle.dumps(payload, protocol=4)
    elif maker == "text":
        data = b"<html>not found</html>"
    else:
        data = b""
    with pytest.raises(LoraUnsupportedFormatError) as info:
        check(data)
    assert info.value.param == "loras[0].path" and info.value.code == "lora_unsupported_format"
    assert not marker.exists()


def test_truncated_files_are_invalid():
    data = save(adapter())
    for cut in (len(data) - 10, 8 + 20):
        with pytest.raises(LoraInvalidError, match="truncated|past the end"):
            check(data[:cut])


def test_non_finite_values_and_non_float_tensors_are_invalid():
    bad = adapter()
    bad["transformer.transformer_blocks.0.attn.to_q.lora_B.weight"][0, 0] = float("nan")
    with pytest.raises(LoraInvalidError, match="NaN"):
        check(save(bad))
    ints = adapter()
    ints["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"] = torch.ones(
        4, 32, dtype=torch.int32)
    with pytest.raises(LoraInvalidError, match="floating point"):
        check(save(ints))
    with pytest.raises(LoraInvalidError, match="no LoRA tensors"):
        check(save({"text_model.embeddings.weight": torch.zeros(4, 4)}))


def test_caps_on_size_tensors_and_rank():
    data = save(adapter(rank=8))
    with pytest.raises(PayloadTooLargeError):
        check(data, max_bytes=len(data) - 1)
    with pytest.raises(LoraInvalidError, match="tensors, more than"):
        check(data, max_tensors=3)
    with pytest.raises(LoraInvalidError, match="rank 8"):
        check(data, max_rank=4)


def test_a_forged_header_cannot_point_outside_the_file_or_overlap():
    def forged(entries: dict, body: bytes) -> bytes:
        header = json.dumps(entries).encode()
        return struct.pack("<Q", len(header)) + header + body

    a, b = "x.lora_A.weight", "x.lora_B.weight"
    outside = {a: {"dtype": "F32", "shape": [1, 1], "data_offsets": [0, 4]},
               b: {"dtype": "F32", "shape": [1, 1], "data_offsets": [4, 1 << 40]}}
    with pytest.raises(LoraInvalidError):
        check(forged(outside, b"\0" * 8))
    overlap = {a: {"dtype": "F32", "shape": [1, 2], "data_offsets": [0, 8]},
               b: {"dtype": "F32", "shape": [2, 1], "data_offsets": [4, 12]}}
    with pytest.raises(LoraInvalidError, match="overlap"):
        check(forged(overlap, b"\0" * 12))
    wrong_size = {a: {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 4]},
                  b: {"dtype": "F32", "shape": [1, 1], "data_offsets": [4, 8]}}
    with pytest.raises(LoraInvalidError, match="size its shape"):
        check(forged(wrong_size, b"\0" * 8))
    with pytest.raises(LoraInvalidError, match="not described"):
        check(forged({a: 5}, b""))
    with pytest.raises(LoraInvalidError, match="malformed"):
        check(forged({a: {"dtype": "F32", "shape": "1x1", "data_offsets": [0, 4]}}, b"\0" * 4))
