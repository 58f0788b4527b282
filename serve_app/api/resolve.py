"""Model resolution: which model a request names, whether it can run, what it loads."""

from __future__ import annotations

import asyncio
import time

from serve_app.api.clients import ModelClient
from serve_app.core.config import TesseraConfig
from serve_app.core.errors import (
    LicenseAcceptanceRequiredError,
    UnknownModelError,
    UnsupportedModelError,
)
from serve_app.core.models import ModelRecord, is_tenant_model
from serve_app.registry.catalog import (
    CATALOG,
    catalog_record,
    find_entry,
    license_accepted,
    unavailable_reason,
)

# imported models this ingress replica keeps (they never change once imported)
MAX_CACHED_MODELS = 4096
CATALOG_TTL_S = 10.0  # how long the catalog's availability is reused


class ModelResolver:
    def __init__(self, config: TesseraConfig, models: ModelClient):
        self.config = config
        self.models = models
        # (tenant, tm_* id) -> its record: every submission looks its model up, and an
        # imported model never changes, so only the first use of one pays the registry's hop
        self._imported: dict[tuple[str, str], ModelRecord] = {}
        # catalog id -> (its record, why it cannot run here now or None)
        self._catalog: tuple[float, dict[str, tuple[ModelRecord, str | None]]] = (
            -CATALOG_TTL_S, {})

    async def resolve(self, tenant: str, model_id: str) -> ModelRecord:
        """The model a request names: a tenant's imported `tm_*` model, or a catalog model by
        Hugging Face id or short name, callable now."""
        entry = None if is_tenant_model(model_id) else find_entry(model_id)
        if entry is None:
            record = await self.imported(tenant, model_id)
            if record.kind == "controlnet":
                raise UnsupportedModelError(
                    f"{model_id} is a ControlNet: name it in controlnets[].path of a generation "
                    f"with a {record.family} model", param="model")
            return record
        record, reason = (await self.catalog())[entry.id]
        if not license_accepted(entry, entry.license, self.config):
            raise LicenseAcceptanceRequiredError(
                f"{entry.id} is under the licence {entry.license or 'unknown'!r}, which must be "
                "accepted before use: import it with /v1/my-models/validate-hf and "
                "/v1/my-models/import-hf (accepted_license: true) and call the tm_* id, or ask "
                "the operator to accept it for everyone (catalog.accepted_licenses)",
                param="model")
        if reason is not None:
            raise UnsupportedModelError(f"{entry.id} cannot run here: {reason}", param="model")
        return record

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

    async def models_for(self, tenant: str) -> list[tuple[ModelRecord, str | None]]:
        """The catalog (with why each cannot run here, if it cannot) and the tenant's
        imported models."""
        return list((await self.catalog()).values()) + [
            (record, None) for record in await self.models.list(tenant)]

    async def catalog(self) -> dict[str, tuple[ModelRecord, str | None]]:
        """Every catalog model by id, callable by name where no reason says otherwise: worked
        out in a thread (it reads the Hugging Face cache and may probe the Hub) and kept
        briefly, as weights come into the cache and the Hub comes and goes."""
        made, models = self._catalog
        if time.monotonic() - made > CATALOG_TTL_S:
            models = await asyncio.to_thread(lambda: {
                e.id: (catalog_record(e, self.config), unavailable_reason(e, self.config))
                for e in CATALOG.values()})
            self._catalog = (time.monotonic(), models)
        return models
