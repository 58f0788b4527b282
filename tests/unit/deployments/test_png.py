"""Tessera's PNG writer."""

from __future__ import annotations

import pytest

# ---------------------------------------------------------------- PNG files


@pytest.mark.parametrize("mode,shape", [("RGB", (37, 53, 3)), ("RGBA", (1, 9, 4)),
                                        ("L", (20, 1)), ("RGB", (256, 256, 3))])
def test_png_files_decode_to_exactly_the_pixels(mode, shape):
    import io

    import numpy as np
    from PIL import Image

    from deployments.outputs import encode_image

    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    data = encode_image(Image.fromarray(pixels, mode), "png")
    Image.open(io.BytesIO(data)).verify()  # signature, chunk order, every chunk's CRC
    back = Image.open(io.BytesIO(data))
    assert (back.format, back.mode, back.size) == ("PNG", mode, (shape[1], shape[0]))
    assert np.array_equal(np.asarray(back), pixels)


def test_png_of_a_palette_image_keeps_its_palette():
    import io

    from PIL import Image

    from deployments.outputs import encode_image

    image = Image.new("P", (5, 3), 2)
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    back = Image.open(io.BytesIO(encode_image(image, "png")))
    assert back.mode == "P" and back.convert("RGB").getpixel((4, 2)) == (0, 255, 0)
