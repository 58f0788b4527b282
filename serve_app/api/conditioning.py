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

from deployments.helpers import depth_model_for, reference_model_for
from deployments.registry import FAMILIES
from serve_app.api.edit_inputs import InputLoader
from serve_app.api.resolve import ModelResolver
from serve_app.core.config import TesseraConfig
from serve_app.core.errors import ControlNetIncompatibleError, InvalidRequestError
from serve_app.core.models import ModelRecord, is_tenant_model
from serve_app.core.types import ControlRef, ModelSource, ReferenceRef
from serve_app.registry.controlnets import (
    CONTROLNETS,
    FoundControlNet,
    locate_controlnet,
    misfit,
)
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
        # everything that can be refused without reading an image, first
        settings = []
        for i, entry in enumerate(body.controlnets):
            param = f"controlnets[{i}]"
            controlnet = await self._resolve(tenant, model, entry, param)
            settings.append(dict(
                path=entry.path, source=controlnet.source,
                conditioning_scale=entry.conditioning_scale, start=entry.start, end=entry.end,
                preprocess=entry.preprocess, depth_model=self._depth(entry, model, param),
                control_mode=self._mode(entry, controlnet, model, param)))
        refs = []
        for i, (entry, fields) in enumerate(zip(body.controlnets, settings, strict=True)):
            image = await self.inputs.load_image(tenant, entry.image, f"controlnets[{i}].image")
            key, sha = await self.inputs.store_input(tenant, task_id, f"control{i}", image)
            refs.append(ControlRef(image_key=key, image_sha256=sha, **fields))
        return refs

    def _depth(self, entry: ControlNetInput, model: ModelRecord, param: str) -> str | None:
        """The depth model of `preprocess: depth` (None for the other preprocessings)."""
        if entry.preprocess != "depth":
            return None
        depth = depth_model_for(self.config.control.depth_model,
                                model.source.tiny_family is not None)
        if depth is None:
            raise InvalidRequestError(
                f"{param}.preprocess: depth needs a depth model, which this server does not "
                "set (control.depth_model); send a depth map with preprocess: none",
                param=f"{param}.preprocess")
        return depth

    async def _resolve(self, tenant: str, model: ModelRecord, entry: ControlNetInput,
                       param: str) -> FoundControlNet:
        """The ControlNet `entry` names (what the replica loads, its family, its control
        modes), once it is known to fit the model."""
        path = f"{param}.path"
        if is_tenant_model(entry.path):
            record = await self.resolver.imported(tenant, entry.path, param=path)
            if record.kind != "controlnet":
                raise InvalidRequestError(f"{path}: {entry.path} is not a ControlNet (it is a "
                                          f"{record.kind})", param=path)
            # its config again (cached, or in its directory): the record keeps the family
            found = await self._locate(record.source.base, path, local=True)
        else:
            found = await self._locate(entry.path, path)
        family, tiny = found.family, found.tiny
        if family != model.family:
            raise ControlNetIncompatibleError(
                f"{path}: {entry.path} is a {FAMILIES[family].display_name} ControlNet; "
                f"{model.id} is a {FAMILIES[model.family].display_name} model",
                param=path)
        if tiny and model.source.tiny_family is None:
            raise ControlNetIncompatibleError(
                f"{path}: {entry.path} is a built-in tiny ControlNet: it runs on the tiny "
                f"models only, not on {model.id}", param=path)
        differ = await asyncio.to_thread(
            misfit, found, model.source, self.config.data_dir, self.config.models_path,
            FAMILIES[model.family].controlnet.fit_keys)
        if differ:
            raise ControlNetIncompatibleError(
                f"{path}: {entry.path} was made for another {FAMILIES[family].display_name} "
                f"model than {model.id}: {'; '.join(differ)}", param=path)
        return found

    async def _locate(self, name: str, param: str, local: bool = False) -> FoundControlNet:
        """Where a ControlNet is and what its config says, remembered (a bounded map)."""
        found = self._found.get(name)
        if found is None:
            found = await asyncio.to_thread(locate_controlnet, name, self.config.models_path,
                                            param, local)
            if len(self._found) >= MAX_REMEMBERED:
                self._found.pop(next(iter(self._found)))
            self._found[name] = found
        return found

    def _mode(self, entry: ControlNetInput, found: FoundControlNet, model: ModelRecord,
              param: str) -> int | None:
        """A union ControlNet's control_mode (a number, or a name the catalog knows): required
        by a union ControlNet, refused by any other."""
        where = f"{param}.control_mode"
        if found.modes is None or not FAMILIES[model.family].controlnet.takes_mode:
            if entry.control_mode is not None:
                raise InvalidRequestError(f"{where}: {entry.path} is not a union ControlNet; "
                                          "it takes no control_mode", param=where)
            return None
        catalog = CONTROLNETS.get(entry.path) or CONTROLNETS.get(found.source.base)
        names = catalog.modes if catalog else {}
        if entry.control_mode is None:
            known = f" ({', '.join(sorted(names, key=names.get))})" if names else ""
            raise InvalidRequestError(f"{where}: {entry.path} is a union ControlNet: say what "
                                      f"its image shows with control_mode, 0 to "
                                      f"{found.modes - 1}{known}", param=where)
        mode = names.get(entry.control_mode) if isinstance(entry.control_mode, str) else (
            entry.control_mode)
        if mode is None or not 0 <= mode < found.modes:
            known = ", ".join(sorted(names, key=names.get)) or "none known by name"
            raise InvalidRequestError(f"{where}: {entry.control_mode!r} is not a mode of "
                                      f"{entry.path} (0 to {found.modes - 1}; {known})",
                                      param=where)
        return mode

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
