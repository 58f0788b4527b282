"""Upscaling in overlapping tiles, so memory stays bounded whatever the input's size, and the
Swin2SR runner (a transformers model, which the family server calls as it calls a diffusers
pipeline).

The input is first padded (its edge pixels repeated) to a multiple of 8 on each side, the size
every upscaler's layers divide evenly, and the output cropped back to the input times the
factor. An input no larger than a tile goes through whole. A larger one is cut into tiles of
`tile` pixels overlapping by `overlap`, each upscaled alone, then put back with linear ramps
across the overlaps, so no seam shows where two tiles meet. Tiles are processed `batch` at a
time, so the model's memory is that of `batch` tiles whatever the input's size; what grows with
the input is the output canvas (16 bytes an output pixel while it is assembled).

Everything here is blocking; torch and transformers are imported inside functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

TILE, OVERLAP, BATCH = 256, 32, 4
MULTIPLE = 8  # inputs are padded to a multiple of it


@dataclass
class UpscaleOutput:
    images: list  # PIL images, as a diffusers pipeline's output holds them


class Swin2SRUpscaler:
    """A Swin2SR checkpoint (`Swin2SRForImageSuperResolution` and its image processor) behind
    the interface the family server uses for pipelines: `components`, `to`, a call on images."""

    def __init__(self, model, processor):
        self.model = model
        self.processor = processor

    @classmethod
    def from_pretrained(cls, path: str, dtype=None) -> Swin2SRUpscaler:
        from transformers import Swin2SRForImageSuperResolution, Swin2SRImageProcessor

        model = Swin2SRForImageSuperResolution.from_pretrained(path, use_safetensors=True)
        if dtype is not None:
            model = model.to(dtype)
        return cls(model.eval(), Swin2SRImageProcessor.from_pretrained(path))

    @property
    def components(self) -> dict:
        return {"model": self.model}

    @property
    def factor(self) -> int:
        return int(self.model.config.upscale)

    def to(self, device) -> Swin2SRUpscaler:
        self.model = self.model.to(device)
        return self

    def set_progress_bar_config(self, **_) -> None:
        pass

    def __call__(self, image: list, **_) -> UpscaleOutput:
        """Each image upscaled by the checkpoint's factor (the processor's padding cut off)."""
        import torch
        from PIL import Image

        inputs = self.processor(image, return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.model.device, self.model.dtype)
        with torch.inference_mode():
            out = self.model(pixel_values=pixels).reconstruction.float().clamp(0, 1)
        arrays = (out * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return UpscaleOutput([Image.fromarray(a[:im.height * self.factor, :im.width * self.factor])
                              for a, im in zip(arrays, image, strict=True)])


def load_swin2sr(path: str, dtype=None) -> Swin2SRUpscaler:
    return Swin2SRUpscaler.from_pretrained(path, dtype)


def spans(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles start along one side: evenly spread, overlapping by at least `overlap`."""
    if length <= tile:
        return [0]
    count = -(-(length - overlap) // (tile - overlap))
    step = (length - tile) / (count - 1)
    return [round(i * step) for i in range(count)]


def upscaled(image, factor: int, run: Callable[[list], list], tile: int = TILE,
             overlap: int = OVERLAP, batch: int = BATCH,
             on_tile: Callable[[int, int], None] | None = None) -> Any:
    """`image` upscaled by `factor`, tile by tile; `run` upscales a list of tiles;
    `on_tile(done, total)` after each batch of tiles."""
    import numpy as np
    from PIL import Image

    image = image.convert("RGB")
    wanted = (image.width * factor, image.height * factor)
    image = _padded(image, MULTIPLE)
    width, height = image.size
    boxes = [(x, y, min(x + tile, width), min(y + tile, height))
             for y in spans(height, tile, overlap) for x in spans(width, tile, overlap)]
    if len(boxes) == 1:
        out = run([image])[0]
        if on_tile is not None:
            on_tile(1, 1)
        return out.convert("RGB").crop((0, 0, *wanted))
    canvas = np.zeros((height * factor, width * factor, 3), dtype=np.float32)
    weight = np.zeros((height * factor, width * factor, 1), dtype=np.float32)
    for start in range(0, len(boxes), batch):
        chunk = boxes[start:start + batch]
        for box, out in zip(chunk, run([image.crop(b) for b in chunk]), strict=True):
            x0, y0, x1, y1 = (v * factor for v in box)
            ramp = _ramp(x1 - x0, y1 - y0, overlap * factor, box, image.size)
            canvas[y0:y1, x0:x1] += np.asarray(out.convert("RGB"), dtype=np.float32) * ramp
            weight[y0:y1, x0:x1] += ramp
        if on_tile is not None:
            on_tile(min(start + batch, len(boxes)), len(boxes))
    canvas /= weight
    return Image.fromarray(np.clip(np.round(canvas), 0, 255).astype(np.uint8)).crop(
        (0, 0, *wanted))


def _padded(image, multiple: int):
    """The image with its last row and column repeated up to a multiple of `multiple`."""
    import numpy as np
    from PIL import Image

    width, height = image.size
    pad_w, pad_h = -width % multiple, -height % multiple
    if not pad_w and not pad_h:
        return image
    pixels = np.pad(np.asarray(image), ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return Image.fromarray(pixels)


def _ramp(width: int, height: int, fade: int, box: tuple, size: tuple):
    """A tile's blending weight: rising linearly across the overlaps it shares with its
    neighbours, flat elsewhere (and at the image's own edges)."""
    import numpy as np

    def axis(length: int, starts_inside: bool, ends_inside: bool):
        w = np.ones(length)
        n = min(fade, length // 2)
        if n and starts_inside:
            w[:n] = np.linspace(1 / (n + 1), n / (n + 1), n)
        if n and ends_inside:
            w[-n:] = np.linspace(n / (n + 1), 1 / (n + 1), n)
        return w

    x0, y0, x1, y1 = box
    horizontal = axis(width, x0 > 0, x1 < size[0])
    vertical = axis(height, y0 > 0, y1 < size[1])
    return (vertical[:, None] * horizontal[None, :])[:, :, None].astype("float32")
