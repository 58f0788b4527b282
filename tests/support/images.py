"""Input images the tests send: small PNGs as base64, with edges in them."""

from __future__ import annotations

import base64
import io


def png_b64(color, size=(96, 96), box: bool = True) -> str:
    """A PNG as base64: a flat colour, with a white rectangle when `box` (edges for Canny)."""
    import numpy as np
    from PIL import Image

    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:] = color
    if box:
        pixels[size[1] // 4:size[1] // 2, size[0] // 5:size[0] * 3 // 5] = 255
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


# two control images that differ everywhere: one with edges, one flat
RED, BLUE = png_b64((200, 20, 20)), png_b64((20, 20, 200), box=False)
