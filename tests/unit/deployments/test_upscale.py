"""Tiled upscaling (`deployments.upscale`): tiles cover the image with their overlaps, a tiled
result is the whole-image result where the upscaler is pointwise, odd sizes come back exact,
and the Swin2SR runner upscales with the real transformers model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deployments.upscale import OVERLAP, Swin2SRUpscaler, spans, upscaled


@pytest.mark.parametrize("length, tile, overlap", [
    (100, 256, 32), (256, 256, 32), (257, 256, 32), (600, 256, 32), (1000, 128, 16)])
def test_spans_cover_the_side_with_at_least_the_overlap(length, tile, overlap):
    starts = spans(length, tile, overlap)
    assert starts[0] == 0
    ends = [min(s + tile, length) for s in starts]
    assert ends[-1] == length
    for s0, e0, s1 in zip(starts, ends, starts[1:] + [length], strict=True):
        if s1 == length:
            break
        assert e0 - s1 >= overlap  # neighbours overlap by at least `overlap`
        assert s1 > s0


def nearest(factor: int):
    """A pointwise upscaler: every output pixel is one input pixel."""
    calls = []

    def run(tiles: list) -> list:
        calls.append(len(tiles))
        return [t.resize((t.width * factor, t.height * factor), Image.NEAREST) for t in tiles]

    return run, calls


def noise(width: int, height: int) -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.mark.parametrize("size", [(64, 48), (301, 203), (530, 260)])
def test_tiles_blend_back_to_the_whole_image_result(size):
    image = noise(*size)
    run, calls = nearest(2)
    progress = []
    out = upscaled(image, 2, run, tile=128, overlap=OVERLAP, batch=3,
                   on_tile=lambda done, total: progress.append((done, total)))
    whole = image.resize((size[0] * 2, size[1] * 2), Image.NEAREST)
    assert out.size == whole.size
    assert np.array_equal(np.asarray(out), np.asarray(whole))
    # tiles went through `batch` at a time, each batch reported
    total = progress[-1][1]
    assert progress[-1][0] == total and sum(calls) == total and max(calls) <= 3
    if size == (64, 48):
        assert calls == [1] and progress == [(1, 1)]


def test_swin2sr_upscales_with_the_real_model(tmp_path):
    from deployments.families.swin2sr import build_tiny

    build_tiny(str(tmp_path))
    model = Swin2SRUpscaler.from_pretrained(str(tmp_path))
    assert model.factor == 2
    image = noise(37, 21)
    out = upscaled(image, model.factor, lambda tiles: model(image=tiles).images)
    assert out.size == (74, 42)
    again = upscaled(image, model.factor, lambda tiles: model(image=tiles).images)
    assert np.array_equal(np.asarray(out), np.asarray(again))  # deterministic
