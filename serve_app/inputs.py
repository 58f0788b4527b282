"""Input images for edits: decode, guard, fetch.

An input is base64 (plain or a data URI), an http(s) URL, or an `upload_id` from `/v1/uploads`.
Every path ends in `decode_image`, which checks the format by its magic bytes and the pixel count
before decoding (a decompression bomb is refused from its header). URL fetches go through
`core.netguard` (globally routable addresses only unless the config allows others, requested at
the address that was checked, one total deadline), follow redirects only after checking each
hop, and stop at the byte cap.
"""

from __future__ import annotations

import base64
import binascii
import io
from urllib.parse import urljoin

from serve_app.core import netguard
from serve_app.core.errors import (
    ImageFetchError,
    InvalidRequestError,
    PayloadTooLargeError,
    TesseraError,
)

MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}
MAX_REDIRECTS = 3


def sniff_format(data: bytes) -> str | None:
    for magic, fmt in MAGIC.items():
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def decode_image(data: bytes, *, param: str, max_bytes: int, max_pixels: int, mode: str = "RGB"):
    from PIL import Image

    if len(data) > max_bytes:
        raise PayloadTooLargeError(f"{param} is {len(data)} bytes; the limit is {max_bytes}",
                                   param=param)
    fmt = sniff_format(data)
    if fmt is None:
        raise InvalidRequestError(f"{param} is not a PNG, JPEG or WebP image", param=param)
    try:
        # Image.open reads only the header: the size is known before any pixel is decoded.
        image = Image.open(io.BytesIO(data), formats=[fmt])
        w, h = image.size
        if w * h > max_pixels:
            raise PayloadTooLargeError(
                f"{param} is {w}x{h} = {w * h} pixels; the limit is {max_pixels}", param=param)
        image.load()
    except TesseraError:
        raise
    except Exception as exc:  # truncated or corrupt files: the client's input, a 400
        raise InvalidRequestError(f"{param} could not be decoded: {exc}", param=param) from None
    return image.convert(mode)


def decode_base64(text: str, *, param: str, max_bytes: int) -> bytes:
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if ";base64" not in header:
            raise InvalidRequestError(f"{param}: only base64 data URIs are accepted", param=param)
    if len(text) * 3 // 4 > max_bytes + 3:
        raise PayloadTooLargeError(f"{param} is over the {max_bytes}-byte limit", param=param)
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"{param} is not valid base64", param=param) from None


async def fetch_url(url: str, *, param: str, max_bytes: int, timeout_s: float,
                    allow_private: bool, what: str = "the image") -> bytes:
    """GET an image (or `what` else): each hop resolved and checked once and requested at that
    address, the whole fetch (redirects included) within timeout_s."""
    return await netguard.within(
        timeout_s, _fetch(url, param=param, max_bytes=max_bytes, allow_private=allow_private,
                          what=what),
        what=f"fetching {url}", param=param)


async def _fetch(url: str, *, param: str, max_bytes: int, allow_private: bool,
                 what: str) -> bytes:
    import httpx

    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            target = await netguard.resolve_async(url, param=param, allow_private=allow_private)
            try:
                async with netguard.pinned_stream(client, "GET", target) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        raise ImageFetchError(f"{param}: GET {url} answered "
                                              f"{response.status_code}", param=param)
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > max_bytes:
                        raise PayloadTooLargeError(
                            f"{param}: {what} at {url} is over {max_bytes} bytes",
                            param=param)
                    chunks, total = [], 0
                    async for chunk in response.aiter_bytes():
                        total += len(chunk)
                        if total > max_bytes:
                            raise PayloadTooLargeError(
                                f"{param}: {what} at {url} is over {max_bytes} bytes",
                                param=param)
                        chunks.append(chunk)
                    return b"".join(chunks)
            except httpx.HTTPError as exc:
                raise ImageFetchError(f"{param}: could not fetch {url}: {exc}",
                                      param=param) from None
    raise ImageFetchError(f"{param}: more than {MAX_REDIRECTS} redirects", param=param)
