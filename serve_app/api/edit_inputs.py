"""The input images of edits: loaded from a URL, an upload or base64, checked, and stored for
the family server (inputs travel as store keys, never inside actor messages).

Every path ends in `decode_image`, which checks the format by its magic bytes and the pixel count
before decoding (a decompression bomb is refused from its header). URL fetches go through
`core.netguard.fetch`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io

from deployments.outputs import encode_image
from serve_app.api.clients import ModelClient
from serve_app.core import netguard
from serve_app.core.config import TesseraConfig
from serve_app.core.errors import (
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    TesseraError,
    UnknownUploadError,
)
from serve_app.core.keys import input_key
from serve_app.core.storage import OutputStore
from serve_app.wire.schema import image_source

MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


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


class InputLoader:
    def __init__(self, config: TesseraConfig, store: OutputStore, models: ModelClient):
        self.config = config
        self.store = store
        self.models = models

    async def load_image(self, tenant: str, ref, param: str, mode: str = "RGB",
                         max_pixels: int | None = None):
        """The image `ref` names, decoded; larger than `max_pixels` (or the inputs' limit) is
        413 before it is decoded."""
        limits = self.config.inputs
        kind, value = image_source(ref)
        if kind == "url":
            netguard.parse(value, param=param)  # a malformed URL is a 400 before anything
        own = self.store.own_key(value) if kind == "url" else None
        if own is not None and own.startswith(f"{tenant}/"):
            # one of our own output links (an image just generated): read from the store
            data = await self.store.get_async(own)
        elif kind == "url":
            data = await netguard.fetch(value, param=param, max_bytes=limits.max_image_bytes,
                                   timeout_s=limits.url_timeout_s,
                                   allow_private=limits.allow_private_urls)
        elif kind == "upload":
            key, _, _ = await self.find_upload(tenant, value, param)
            data = await self.store.get_async(key)
        else:
            data = decode_base64(value, param=param, max_bytes=limits.max_image_bytes)
        # Decoding is CPU work: off the event loop.
        cap = min(limits.max_image_pixels, max_pixels or limits.max_image_pixels)
        return await asyncio.to_thread(decode_image, data, param=param, mode=mode,
                                       max_bytes=limits.max_image_bytes, max_pixels=cap)

    async def store_inputs(self, tenant: str, task_id: str, images: list, mask,
                           size: tuple[int, int], warnings: list[str],
                           ) -> tuple[list[str], str | None]:
        """Inputs go to the store, the mask at the output size; returns their keys."""
        keys = []
        for i, image in enumerate(images):
            key = input_key(tenant, task_id, f"image{i}")
            await self._put_png(key, image)
            keys.append(key)
        if mask is None:
            return keys, None
        if mask.size != size:
            warnings.append(f"mask_image resized from {mask.size[0]}x{mask.size[1]} to "
                            f"{size[0]}x{size[1]}")
            mask = mask.resize(size, resample=0)  # nearest: keep the mask binary
        mask_key = input_key(tenant, task_id, "mask")
        await self._put_png(mask_key, mask)
        return keys, mask_key

    async def _put_png(self, key: str, image) -> str:
        """The image stored as PNG at `key`; its sha256 (what a replica caches it by)."""
        data = await asyncio.to_thread(encode_image, image, "png")
        await self.store.put_async(key, data, "image/png")
        return hashlib.sha256(data).hexdigest()

    async def store_input(self, tenant: str, task_id: str, name: str, image) -> tuple[str, str]:
        """One input image of the task, stored: (its key, its sha256)."""
        key = input_key(tenant, task_id, name)
        return key, await self._put_png(key, image)

    async def find_upload(self, tenant: str, upload_id: str,
                          param: str = "upload_id") -> tuple[str, int, str]:
        """The tenant's upload, once its bytes arrived: another tenant's id is never found."""
        found = await self.models.find_upload(tenant, upload_id)
        missing = UnknownUploadError(f"no upload {upload_id!r} (or nothing was PUT to it yet)",
                                     param=param)
        if found is None:
            raise missing
        key, content_type, declared = found
        try:
            size, _ = await self.store.stat_async(key)
        except NotFoundError:
            raise missing from None
        # an object store's presigned PUT cannot bound what arrives: checked here
        cap = min(declared or self.config.storage.max_upload_bytes,
                  self.config.storage.max_upload_bytes)
        if size > cap:
            raise PayloadTooLargeError(f"upload {upload_id} is {size} bytes, over the {cap} "
                                       "bytes it was declared with", param=param)
        return key, size, content_type
