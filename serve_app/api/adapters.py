"""The LoRA adapters a request names, staged before its 202.

Each `loras[i].path` (a tenant's tm_* LoRA model, a Hub adapter, an http(s) URL through the
outbound guard) becomes an `AdapterRef`: the file is read, its layout checked (`core.lora`:
safetensors only, caps, LoRA tensors; nothing is unpickled), its keys and shapes checked against
the model's base where the base's weights are on this machine, and its bytes put in the store
under `<tenant>/loras/<sha256>.safetensors`, where the family server reads them once and then
serves them from its caches. What can only be known in the replica (values are finite, keys a
converter must rename) fails the task there with the same error codes.
"""

from __future__ import annotations

import asyncio
import time

import serve_app.lora_repos as lora_repos
from deployments.adapters import family_takes_loras, misfits, prefixed
from serve_app.api.resolve import ModelResolver
from serve_app.core import lora, netguard
from serve_app.core.config import TesseraConfig
from serve_app.core.errors import (
    ForbiddenURLError,
    ImageFetchError,
    InvalidRequestError,
    LoraIncompatibleError,
    LoraUnreachableError,
    NotFoundError,
)
from serve_app.core.storage import OutputStore
from serve_app.core.types import AdapterRef
from serve_app.inputs import fetch_url
from serve_app.protocol import LoraWeight, ModelInfo

MAX_REMEMBERED = 4096


def adapter_key(tenant: str, sha256: str) -> str:
    return f"{tenant}/loras/{sha256}.safetensors"


class AdapterStager:
    def __init__(self, config: TesseraConfig, store: OutputStore, resolver: ModelResolver):
        self.config = config
        self.store = store
        self.resolver = resolver
        # path as named -> (sha256, size, header shapes, when learnt): a repeated adapter is
        # not fetched or read again while its staged copy is in the store
        self._known: dict[str, tuple[str, int, dict, float]] = {}
        self._bases: dict[str, dict] = {}  # model source -> its modules' shapes ({}: unknown)

    async def stage(self, tenant: str, model: ModelInfo, source: str,
                    loras: list[LoraWeight]) -> list[AdapterRef]:
        if not loras:
            return []
        if not await asyncio.to_thread(family_takes_loras, model.family):
            raise LoraIncompatibleError(f"{model.id} takes no LoRA adapters (its "
                                        f"{model.family} pipeline does not load them)",
                                        param="loras")
        refs = []
        for i, entry in enumerate(loras):
            param = f"loras[{i}].path"
            sha, size, shapes = await self._staged(tenant, model, entry.path, param)
            await self._check_fit(model, source, shapes, param)
            refs.append(AdapterRef(path=entry.path, scale=entry.scale, sha256=sha,
                                   key=adapter_key(tenant, sha), size=size))
        return refs

    def model_adapter(self, model: ModelInfo, lora_scale: float | None) -> list[LoraWeight]:
        """A LoRA model's own adapter, first in its requests; `lora_scale` elsewhere is an
        error rather than silently ignored."""
        if model.kind == "lora":
            return [LoraWeight(path=model.id, scale=1.0 if lora_scale is None else lora_scale)]
        if lora_scale is not None:
            raise InvalidRequestError(f"lora_scale applies to LoRA models; {model.id} is not "
                                      "one (give each adapter's scale in loras)",
                                      param="lora_scale")
        return []

    async def _staged(self, tenant: str, model: ModelInfo, path: str, param: str
                      ) -> tuple[str, int, dict]:
        """(sha256, size, header shapes) of the adapter, its bytes in the store."""
        memo = (tenant, path) if path.startswith("tm_") else path
        known = self._known.get(memo)
        by_url = path.startswith(("http://", "https://"))
        if known is not None and (not by_url or (
                time.monotonic() - known[3] < self.config.loras.remember_s)):
            sha, size, shapes, _ = known
            try:
                await self.store.stat_async(adapter_key(tenant, sha))
                return sha, size, shapes
            except NotFoundError:
                pass  # swept since, or staged by another tenant: read it again
        data = await self._read(tenant, path, param)
        limits = self.config.loras
        info = await asyncio.to_thread(lora.inspect, data, param=param,
                                       max_bytes=limits.max_bytes,
                                       max_tensors=limits.max_tensors, max_rank=limits.max_rank)
        shapes = await asyncio.to_thread(lora.header_shapes, data)
        await self.store.put_async(adapter_key(tenant, info.sha256), data,
                                   "application/octet-stream")
        if len(self._known) >= MAX_REMEMBERED:
            self._known.pop(next(iter(self._known)))
        self._known[memo] = (info.sha256, info.size, shapes, time.monotonic())
        return info.sha256, info.size, shapes

    async def _read(self, tenant: str, path: str, param: str) -> bytes:
        limits = self.config.loras
        if path.startswith("tm_"):
            record = await self.resolver.imported(tenant, path, param=param)
            if record.info.kind != "lora" or record.adapter is None:
                raise LoraIncompatibleError(f"{param}: {path} is a model, not a LoRA",
                                            param=param)
            found = await asyncio.to_thread(lora_repos.find, record.adapter,
                                            self.config.data_dir, self.config.models_path,
                                            param, local=True)
            return await asyncio.to_thread(lora_repos.read, found, limits.max_bytes, param)
        if path.startswith(("http://", "https://")):
            netguard.parse(path, param=param, error=LoraUnreachableError)
            try:
                return await fetch_url(path, param=param, max_bytes=limits.max_bytes,
                                       timeout_s=limits.url_timeout_s,
                                       allow_private=self.config.inputs.allow_private_urls,
                                       what="the adapter")
            except (ImageFetchError, ForbiddenURLError) as exc:
                raise LoraUnreachableError(exc.message, param=param) from None
        found = await asyncio.to_thread(lora_repos.find, path, self.config.data_dir,
                                        self.config.models_path, param)
        return await asyncio.to_thread(lora_repos.read, found, limits.max_bytes, param)

    async def _check_fit(self, model: ModelInfo, source: str, shapes: dict, param: str) -> None:
        """Before the 202 where the base's weights are on this machine and the adapter is in
        diffusers' naming; otherwise the replica checks it against the loaded modules."""
        base = self._bases.get(source)
        if base is None:
            base = await asyncio.to_thread(lora_repos.base_shapes, source,
                                           self.config.data_dir, self.config.models_path)
            if base:  # a base not cached yet may be later
                self._bases[source] = base
        if not base or not prefixed(shapes, set(base)):
            return
        problems = misfits(shapes, base)
        if problems:
            raise LoraIncompatibleError(f"{param}: the adapter does not fit {model.id}: "
                                        + "; ".join(problems), param=param)
