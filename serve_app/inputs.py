"""Input images for edits: decode, guard, fetch.

An input is base64 (plain or a data URI), an http(s) URL, or an `upload_id` from `/v1/uploads`.
Every path ends in `decode_image`, which checks the format by its magic bytes and the pixel count
before decoding (a decompression bomb is refused from its header). URL fetches refuse loopback,
link-local and private addresses unless the config allows them, follow redirects only after
checking each hop, and stop at the byte cap.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

from serve_app.core.errors import (
    ForbiddenURLError,
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


def check_url_allowed(url: str, *, param: str, allow_private: bool,
                      error: type[TesseraError] = ForbiddenURLError) -> None:
    """Only http(s), and (unless allowed) no loopback, link-local or private address: image
    URLs and webhooks alike."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise error(f"{param}: only http(s) URLs are allowed", param=param)
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ImageFetchError(f"{param}: cannot resolve {parts.hostname}: {exc}",
                              param=param) from None
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved
                or ip.is_multicast or ip.is_unspecified):
            raise error(
                f"{param}: {parts.hostname} resolves to {ip}, a loopback, link-local or "
                "private address; such URLs are not allowed", param=param)


async def fetch_url(url: str, *, param: str, max_bytes: int, timeout_s: float,
                    allow_private: bool) -> bytes:
    import httpx

    async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            # DNS lookups block: off the event loop.
            await asyncio.to_thread(check_url_allowed, url, param=param,
                                    allow_private=allow_private)
            try:
                async with client.stream("GET", url) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        raise ImageFetchError(f"{param}: GET {url} answered "
                                              f"{response.status_code}", param=param)
                    chunks, total = [], 0
                    async for chunk in response.aiter_bytes():
                        total += len(chunk)
                        if total > max_bytes:
                            raise PayloadTooLargeError(
                                f"{param}: the image at {url} is over {max_bytes} bytes",
                                param=param)
                        chunks.append(chunk)
                    return b"".join(chunks)
            except httpx.HTTPError as exc:
                raise ImageFetchError(f"{param}: could not fetch {url}: {exc}",
                                      param=param) from None
    raise ImageFetchError(f"{param}: more than {MAX_REDIRECTS} redirects", param=param)
