"""Model resolution: which model a request names, whether it can run, what it loads."""

from __future__ import annotations

import asyncio
import time

from deployments.adapters import family_takes_loras
from deployments.registry import FAMILIES
from serve_app.api.clients import ModelClient
from serve_app.catalog import (
    CATALOG,
    find_entry,
    license_accepted,
    model_terms,
    unavailable_reason,
)
from serve_app.core.config import TesseraConfig
from serve_app.core.errors import (
    LicenseAcceptanceRequiredError,
    UnknownModelError,
    UnsupportedModelError,
)
from serve_app.models import ModelRecord
from serve_app.protocol import ModelInfo

# imported models this ingress replica keeps (they never change once imported; see models.py)
MAX_CACHED_MODELS = 4096
CATALOG_TTL_S = 10.0  # how long the catalog's availability is reused


class ModelResolver:
    def __init__(self, config: TesseraConfig, models: ModelClient):
        self.config = config
        self.models = models
        # (tenant, tm_* id) -> its record: every submission looks its model up, and an
        # imported model never changes, so only the first use of one pays the registry's hop
        self._imported: dict[tuple[str, str], ModelRecord] = {}
        self._catalog: tuple[float, dict[str, ModelInfo]] = (-CATALOG_TTL_S, {})

    async def resolve(self, tenant: str, model_id: str) -> tuple[ModelInfo, str]:
        """The model a request names and the source its family server loads: a tenant's
        imported `tm_*` model, or a catalog model by Hugging Face id or short name."""
        entry = None if model_id.startswith("tm_") else find_entry(model_id)
        if entry is None:
            record = await self.imported(tenant, model_id)
            return record.info, record.source
        info = (await self.catalog())[entry.id]
        if not license_accepted(entry, entry.license, self.config):
            raise LicenseAcceptanceRequiredError(
                f"{entry.id} is under the licence {entry.license or 'unknown'!r}, which must be "
                "accepted before use: import it with /v1/my-models/validate-hf and "
                "/v1/my-models/import-hf (accepted_license: true) and call the tm_* id, or ask "
                "the operator to accept it for everyone (catalog.accepted_licenses)",
                param="model")
        if not info.available:
            raise UnsupportedModelError(f"{entry.id} cannot run here: "
                                        f"{info.unavailable_reason}", param="model")
        return info, entry.source

    async def imported(self, tenant: str, model_id: str, param: str = "model") -> ModelRecord:
        """The tenant's own imported model (404 for anyone else's)."""
        record = self._imported.get((tenant, model_id))
        if record is None:  # an unknown id is asked again: it may be imported since
            try:
                record = await self.models.get(tenant, model_id)
            except UnknownModelError as exc:
                raise UnknownModelError(exc.message, param=param) from None
            if len(self._imported) >= MAX_CACHED_MODELS:
                self._imported.pop(next(iter(self._imported)))
            self._imported[(tenant, model_id)] = record
        return record

    async def models_for(self, tenant: str) -> list[ModelInfo]:
        """The catalog (available or not) and the tenant's imported models."""
        return list((await self.catalog()).values()) + await self.models.list(tenant)

    async def catalog(self) -> dict[str, ModelInfo]:
        """Every catalog model by id, callable by name where `available`: worked out in a
        thread (it reads the Hugging Face cache and may probe the Hub) and kept briefly, as
        weights come into the cache and the Hub comes and goes."""
        made, models = self._catalog
        if time.monotonic() - made > CATALOG_TTL_S:
            models = await asyncio.to_thread(
                lambda: {e.id: self._catalog_info(e) for e in CATALOG.values()})
            self._catalog = (time.monotonic(), models)
        return models

    def _catalog_info(self, entry) -> ModelInfo:
        spec = FAMILIES[entry.family]
        terms = model_terms(entry.id, entry.family, entry.license, entry.parameters, self.config)
        reason = unavailable_reason(entry, self.config)
        return ModelInfo(
            id=entry.id, owned_by="tessera", name=entry.description or None,
            hf_model_id=entry.id, family=entry.family, pipeline_tag=spec.pipeline_tag,
            tasks=spec.tasks, license=terms.license or "see model card",
            requires_license_acceptance=not license_accepted(entry, entry.license,
                                                             self.config),
            pricing=terms.pricing, parameters=terms.parameters, available=reason is None,
            unavailable_reason=reason, supports_loras=family_takes_loras(entry.family))
