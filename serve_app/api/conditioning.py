"""A generation's ControlNets and reference images, staged before its 202.

Each ControlNet is resolved first, so a wrong one is refused before any image is read: a
tenant's imported `tm_*` ControlNet (another tenant's is not found), a catalog or built-in tiny
one, or a Hugging Face repo (`registry.controlnets`: its config.json says its family). One of
another family than the model's is `controlnet_incompatible`. Then each control and reference
image is read like an edit's input (base64, URL through the outbound guard, upload) and stored
with the task's inputs; its sha256 is what the replica caches its prepared form by.
"""

from __future__ import annotations

import asyncio

from deployments.helpers import TINY_HELPERS, depth_model_for, reference_model_for
from deployments.registry import FAMILIES
from serve_app.api.edit_inputs import InputLoader
from serve_app.api.resolve import ModelResolver
from serve_app.core.config import TesseraConfig
from serve_app.core.errors import ControlNetIncompatibleError, InvalidRequestError
from serve_app.core.models import ModelRecord, is_tenant_model
from serve_app.core.types import ControlRef, ModelSource, ReferenceRef
from serve_app.registry.controlnets import CONTROLNETS, FoundControlNet, locate_controlnet
from serve_app.wire.schema import ControlNetInput, GenerationRequest

MAX_REMEMBERED = 1024  # Hub ControlNets whose family this ingress replica remembers


class ConditioningStager:
    def __init__(self, config: TesseraConfig, inputs: InputLoader, resolver: ModelResolver):
        self.config = config
        self.inputs = inputs
        self.resolver = resolver
        self._found: dict[str, FoundControlNet] = {}  # Hub id -> what its config.json said

    async def controlnets(self, tenant: str, model: ModelRecord, body: GenerationRequest,
                          task_id: str) -> list[ControlRef]:
        """The request's ControlNets: each resolved and checked against the model, then its
        control image stored."""
        if not body.controlnets:
            return []
        spec = FAMILIES[model.family]
        if spec.controlnet is None:
            raise InvalidRequestError(f"{model.id} takes no ControlNets ({spec.display_name} "
                                      "models do not run them here)", param="controlnets")
        if len(body.controlnets) > spec.controlnet.max_controlnets:
            raise InvalidRequestError(f"{model.id} runs at most {spec.controlnet.max_controlnets}"
                                      " ControlNet(s) in one generation", param="controlnets")
        found = [await self._resolve(tenant, model, c, f"controlnets[{i}]")
                 for i, c in enumerate(body.controlnets)]
        refs = []
        for i, (entry, (where, modes)) in enumerate(zip(body.controlnets, found, strict=True)):
            param = f"controlnets[{i}]"
            depth = None
            if entry.preprocess == "depth":
                depth = depth_model_for(self.config.control.depth_model,
                                        model.source.tiny_family is not None)
                if depth is None:
                    raise InvalidRequestError(
                        f"{param}.preprocess: depth needs a depth model, which this server "
                        "does not set (control.depth_model); send a depth map with preprocess: "
                        "none", param=f"{param}.preprocess")
            image = await self.inputs.load_image(tenant, entry.image, f"{param}.image")
            key, sha = await self.inputs.store_input(tenant, task_id, f"control{i}", image)
            refs.append(ControlRef(
                path=entry.path, source=where, image_key=key, image_sha256=sha,
                conditioning_scale=entry.conditioning_scale, start=entry.start, end=entry.end,
                preprocess=entry.preprocess, depth_model=depth,
                control_mode=self._mode(entry, modes, model, param)))
        return refs

    async def _resolve(self, tenant: str, model: ModelRecord, entry: ControlNetInput,
                       param: str) -> tuple[ModelSource, dict[str, int]]:
        """(what the replica loads, the ControlNet's named control modes), once it is known to
        fit the model's family."""
        path = f"{param}.path"
        if is_tenant_model(entry.path):
            record = await self.resolver.imported(tenant, entry.path, param=path)
            if record.kind != "controlnet":
                raise InvalidRequestError(f"{path}: {entry.path} is not a ControlNet (it is a "
                                          f"{record.kind})", param=path)
            family, source = record.family, record.source
            tiny = source.base in TINY_HELPERS
            catalog = CONTROLNETS.get(record.hf_model_id)
        else:
            found = self._found.get(entry.path)
            if found is None:
                found = await asyncio.to_thread(locate_controlnet, entry.path,
                                                self.config.models_path, path)
                if len(self._found) >= MAX_REMEMBERED:
                    self._found.pop(next(iter(self._found)))
                self._found[entry.path] = found
            family, source, tiny = found.family, found.source, found.tiny
            catalog = CONTROLNETS.get(entry.path)
        if family != model.family:
            raise ControlNetIncompatibleError(
                f"{path}: {entry.path} is a {FAMILIES[family].display_name} ControlNet; "
                f"{model.id} is a {FAMILIES[model.family].display_name} model",
                param=path)
        if tiny != (model.source.tiny_family is not None):
            raise ControlNetIncompatibleError(
                f"{path}: the built-in tiny ControlNets run on the tiny models only, and the "
                f"tiny models take only them ({model.id}, {entry.path})", param=path)
        return source, (catalog.modes if catalog else {})

    def _mode(self, entry: ControlNetInput, modes: dict[str, int], model: ModelRecord,
              param: str) -> int | None:
        """A union ControlNet's control_mode, a number or a name its catalog entry knows."""
        if entry.control_mode is None:
            return None
        spec = FAMILIES[model.family].controlnet
        if not spec.takes_mode:
            raise InvalidRequestError(f"{param}.control_mode: {model.family} ControlNets take "
                                      "no control_mode", param=f"{param}.control_mode")
        if isinstance(entry.control_mode, int):
            if entry.control_mode < 0:
                raise InvalidRequestError(f"{param}.control_mode must not be negative",
                                          param=f"{param}.control_mode")
            return entry.control_mode
        if entry.control_mode not in modes:
            known = ", ".join(sorted(modes)) or "none known by name: give its number"
            raise InvalidRequestError(f"{param}.control_mode: {entry.control_mode!r} is not a "
                                      f"mode of {entry.path} ({known})",
                                      param=f"{param}.control_mode")
        return modes[entry.control_mode]

    async def references(self, tenant: str, model: ModelRecord, body: GenerationRequest,
                         task_id: str) -> tuple[list[ReferenceRef], ModelSource | None]:
        """The request's reference images, stored, and the model that conditions on them."""
        if not body.reference_images:
            return [], None
        spec = FAMILIES[model.family]
        if spec.reference is None:
            raise InvalidRequestError(f"{model.id} takes no reference_images (FLUX models "
                                      "take them through Redux, SDXL models through an "
                                      "IP-Adapter)", param="reference_images")
        settings = self.config.enabled_families().get(model.family)
        helper = reference_model_for(model.family, settings.reference_model if settings else None,
                                     model.source.tiny_family is not None)
        if helper is None:
            raise InvalidRequestError(
                f"reference_images: no {spec.reference} is set for {spec.display_name} models "
                f"on this server (families.{model.family}.reference_model)",
                param="reference_images")
        scales = {r.scale for r in body.reference_images if r.scale > 0}
        if spec.reference == "ip-adapter" and len(scales) > 1:
            raise InvalidRequestError(
                "reference_images: an IP-Adapter applies one scale to all its images; give "
                "them the same scale", param="reference_images")
        refs = []
        for i, entry in enumerate(body.reference_images):
            image = await self.inputs.load_image(tenant, entry.image,
                                                 f"reference_images[{i}].image")
            key, sha = await self.inputs.store_input(tenant, task_id, f"reference{i}", image)
            refs.append(ReferenceRef(image_key=key, image_sha256=sha, scale=entry.scale))
        return refs, ModelSource(base=helper)
