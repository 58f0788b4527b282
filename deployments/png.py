"""PNG files for generated images: every row filtered with Up, deflated by ISA-L.

Pillow's PNG writer picks a filter for each row and deflates with zlib; at its fastest
level it took 4-7 ms for a 256² image here, 16-29 ms at 512² and 66-114 ms at 1024², the largest
part of the serving overhead around a fast generation. One filter for the whole image (Up: each
byte minus the one above it, one numpy subtraction) and ISA-L's deflate (python-isal, level 1)
write the same pixels in 0.4-0.6 / 1.4-3 / 5-12 ms, in files between 6% smaller and 2.4% larger
than Pillow's (`python -m loadtests.bench_encode`). Modes other than L, RGB and RGBA go through
Pillow.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from isal import isal_zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPES = {"L": 0, "RGB": 2, "RGBA": 6}  # 8 bits per sample
UP = 2  # the PNG filter type: Up
LEVEL = 1  # ISA-L's levels are 0-3; level 2 saved about 1% of the bytes for 10% more time


def _chunk(tag: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + tag + data
            + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag))))


def encode_png(image) -> bytes:
    """A PNG file of a PIL image, lossless: it decodes to exactly the image's pixels."""
    if image.mode not in COLOR_TYPES:
        buf = io.BytesIO()
        image.save(buf, format="PNG", compress_level=1)
        return buf.getvalue()
    pixels = np.asarray(image, dtype=np.uint8)
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    filtered = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = UP
    filtered[0, 1:] = rows[0]  # above the first row PNG reads zeros
    # uint8 arithmetic wraps modulo 256, which is how the Up filter is defined
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    header = struct.pack(">IIBBBBB", width, height, 8, COLOR_TYPES[image.mode], 0, 0, 0)
    return (SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", isal_zlib.compress(filtered, LEVEL)) + _chunk(b"IEND", b""))
