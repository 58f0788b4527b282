"""The LoRA adapters a request names, staged before its 202 (the ingress's side).

Each `loras[i].path` is parsed once into an `AdapterSource` and resolved (`sources`): read, its
layout checked (`files`: safetensors only, caps, LoRA tensors; nothing is unpickled), its keys
and shapes checked against the model's base where the base's weights are on this machine
(`fit`), and its bytes put in the store under `<tenant>/loras/<sha256>.safetensors`, where the
family server reads them once and then serves them from its caches. What can only be known in
the replica (values are finite, keys a converter must rename) fails the task there with the
same error codes. Nothing here imports torch, diffusers or peft.
"""

from __future__ import annotations

import asyncio
import time

from deployments.adapters import files
from deployments.adapters.fit import base_shapes, misfits, prefixed
from deployments.adapters.sources import AdapterResolver
from deployments.registry import takes_loras
from serve_app.core.config import TesseraConfig
from serve_app.core.errors import InvalidRequestError, LoraIncompatibleError, NotFoundError
from serve_app.core.models import AdapterSource, ModelRecord
from serve_app.core.storage import OutputStore
from serve_app.core.types import AdapterRef

MAX_REMEMBERED = 4096


def adapter_key(tenant: str, sha256: str) -> str:
    return f"{tenant}/loras/{sha256}.safetensors"


def model_adapter(model: ModelRecord, lora_scale: float | None) -> list[tuple[str, float]]:
    """A LoRA model's own adapter (path, scale), first in its requests; `lora_scale` elsewhere
    is an error rather than silently ignored."""
    if model.kind == "lora":
        return [(model.id, 1.0 if lora_scale is None else lora_scale)]
    if lora_scale is not None:
        raise InvalidRequestError(f"lora_scale applies to LoRA models; {model.id} is not one "
                                  "(give each adapter's scale in loras)", param="lora_scale")
    return []


class AdapterStager:
    def __init__(self, config: TesseraConfig, store: OutputStore, resolver: AdapterResolver):
        self.config = config
        self.store = store
        self.resolver = resolver
        # path as named -> (sha256, size, header shapes, when learnt): a repeated adapter is
        # not fetched or read again while its staged copy is in the store
        self._known: dict[object, tuple[str, int, dict, float]] = {}
        self._bases: dict[str, dict] = {}  # model source key -> its modules' shapes

    async def stage(self, tenant: str, model: ModelRecord,
                    loras: list[tuple[str, float]]) -> list[AdapterRef]:
        """(path, scale) pairs as the request named them, in order, staged."""
        if not loras:
            return []
        if not takes_loras(model.family):
            raise LoraIncompatibleError(f"{model.id} takes no LoRA adapters (its "
                                        f"{model.family} pipeline does not load them)",
                                        param="loras")
        refs = []
        for i, (path, scale) in enumerate(loras):
            param = f"loras[{i}].path"
            source = AdapterSource.parse(path, param)
            sha, size, shapes = await self._staged(tenant, source, param)
            await self._check_fit(model, shapes, param)
            refs.append(AdapterRef(path=path, scale=scale, sha256=sha,
                                   key=adapter_key(tenant, sha), size=size))
        return refs

    async def _staged(self, tenant: str, source: AdapterSource, param: str
                      ) -> tuple[str, int, dict]:
        """(sha256, size, header shapes) of the adapter, its bytes in the store."""
        memo = (tenant, source) if source.kind == "model" else source
        known = self._known.get(memo)
        if known is not None and (source.kind != "url" or (
                time.monotonic() - known[3] < self.config.loras.remember_s)):
            sha, size, shapes, _ = known
            try:
                await self.store.stat_async(adapter_key(tenant, sha))
                return sha, size, shapes
            except NotFoundError:
                pass  # swept since, or staged by another tenant: read it again
        found = await self.resolver.resolve(tenant, source, param)
        limits = self.config.loras
        info = await asyncio.to_thread(files.inspect, found.data, param=param,
                                       max_bytes=limits.max_bytes,
                                       max_tensors=limits.max_tensors, max_rank=limits.max_rank)
        shapes = await asyncio.to_thread(files.header_shapes, found.data)
        await self.store.put_async(adapter_key(tenant, info.sha256), found.data,
                                   "application/octet-stream")
        if len(self._known) >= MAX_REMEMBERED:
            self._known.pop(next(iter(self._known)))
        self._known[memo] = (info.sha256, info.size, shapes, time.monotonic())
        return info.sha256, info.size, shapes

    async def _check_fit(self, model: ModelRecord, shapes: dict, param: str) -> None:
        """Before the 202 where the base's weights are on this machine and the adapter is in
        diffusers' naming; otherwise the replica checks it against the loaded modules."""
        key = model.source.key
        base = self._bases.get(key)
        if base is None:
            base = await asyncio.to_thread(base_shapes, model.source, self.config.data_dir,
                                           self.config.models_path)
            if base:  # a base not cached yet may be later
                self._bases[key] = base
        if not base or not prefixed(shapes, set(base)):
            return
        problems = misfits(shapes, base)
        if problems:
            raise LoraIncompatibleError(f"{param}: the adapter does not fit {model.id}: "
                                        + "; ".join(problems), param=param)
