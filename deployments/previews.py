"""Preview images of a running pipeline call, made from its latents without the VAE.

A linear projection per family (`FamilySpec.latent_rgb`: one RGB weight per latent channel, as
image tools have long used for live previews) maps latents to colours at the latent resolution
(1/8 of the output side); that is small and costs microseconds, so it can run in the step
callback. Packed latents (FLUX, Qwen-Image: a sequence of 2x2 patches) are unpacked with the
pipeline's own `_unpack_latents`.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from serve_app.core.types import FamilySpec

PREVIEW_EVERY = 4  # steps between previews (and the last step)
PREVIEW_SIDE = 256  # longest side of a preview image, pixels


def due(step: int, total: int) -> bool:
    return step % PREVIEW_EVERY == 0 or step == total


def _spatial(pipe, latents, index: int, width: int, height: int):
    """The image at `index` as (channels, h, w), or None where the layout is unknown."""
    x = latents[index:index + 1]
    if x.ndim == 3:  # packed (batch, tokens, channels x 2 x 2)
        unpack = getattr(pipe, "_unpack_latents", None)
        if unpack is None:
            return None
        x = unpack(x, height, width, pipe.vae_scale_factor)
    if x.ndim == 5:  # (batch, channels, frames, h, w): video-style VAEs, one frame
        x = x[:, :, 0]
    return x[0] if x.ndim == 4 else None


def preview_uri(spec: FamilySpec, pipe, latents: Any, index: int, width: int,
                height: int) -> str | None:
    """A JPEG data URI of image `index` of the batch's latents, or None."""
    import torch
    from PIL import Image

    with torch.no_grad():
        x = _spatial(pipe, latents, index, width, height)
        if x is None:
            return None
        x = x.float().cpu()
        if spec.latent_rgb is not None and len(spec.latent_rgb) == x.shape[0]:
            weights = torch.tensor(spec.latent_rgb)
            rgb = torch.einsum("chw,cr->rhw", x, weights)
            rgb += torch.tensor(spec.latent_rgb_bias)[:, None, None]
            rgb = (rgb + 1) / 2
        else:
            rgb = x[:3] if x.shape[0] >= 3 else x[:1].expand(3, -1, -1)
            low = rgb.amin(dim=(1, 2), keepdim=True)
            high = rgb.amax(dim=(1, 2), keepdim=True)
            rgb = (rgb - low) / (high - low).clamp_min(1e-6)
        pixels = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(pixels, "RGB")
    scale = PREVIEW_SIDE / max(image.size)
    if scale < 1 or max(image.size) < 64:
        image = image.resize((max(1, round(image.width * scale)),
                              max(1, round(image.height * scale))), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
