"""The input images of edits: loaded from a URL, an upload or base64, checked, and stored for
the family server (inputs travel as store keys, never inside actor messages)."""

from __future__ import annotations

import asyncio

from deployments.outputs import encode_image
from serve_app.api.clients import ModelClient
from serve_app.core import netguard
from serve_app.core.config import TesseraConfig
from serve_app.core.errors import NotFoundError, PayloadTooLargeError, UnknownUploadError
from serve_app.core.keys import input_key
from serve_app.core.storage import OutputStore
from serve_app.inputs import decode_base64, decode_image, fetch_url
from serve_app.rules import image_source


class InputLoader:
    def __init__(self, config: TesseraConfig, store: OutputStore, models: ModelClient):
        self.config = config
        self.store = store
        self.models = models

    async def load_image(self, tenant: str, ref, param: str, mode: str = "RGB"):
        limits = self.config.inputs
        kind, value = image_source(ref)
        if kind == "url":
            netguard.parse(value, param=param)  # a malformed URL is a 400 before anything
        own = self.store.own_key(value) if kind == "url" else None
        if own is not None and own.startswith(f"{tenant}/"):
            # one of our own output links (an image just generated): read from the store
            data = await self.store.get_async(own)
        elif kind == "url":
            data = await fetch_url(value, param=param, max_bytes=limits.max_image_bytes,
                                   timeout_s=limits.url_timeout_s,
                                   allow_private=limits.allow_private_urls)
        elif kind == "upload":
            key, _, _ = await self.find_upload(tenant, value, param)
            data = await self.store.get_async(key)
        else:
            data = decode_base64(value, param=param, max_bytes=limits.max_image_bytes)
        # Decoding is CPU work: off the event loop.
        return await asyncio.to_thread(decode_image, data, param=param, mode=mode,
                                       max_bytes=limits.max_image_bytes,
                                       max_pixels=limits.max_image_pixels)

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

    async def _put_png(self, key: str, image) -> None:
        await self.store.put_async(key, await asyncio.to_thread(encode_image, image, "png"),
                                   "image/png")

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
