"""Validations, imported models and uploads, per tenant.

`ModelRegistry` holds the rules; `ModelRegistryActor` is the named Ray actor every ingress
replica talks to, restarted by Ray when its process dies. Its state is in the database (so a
restart loses nothing); what crosses to and from it is typed (`ValidateResponse`,
`ModelRecord`, `ModelInfo`). A `models.json` from before the database is imported once.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path

import ray
from pydantic import BaseModel

from serve_app.core.config import LimitSettings
from serve_app.core.errors import (
    LicenseNotAcceptedError,
    RateLimitedError,
    ServiceUnavailableError,
    UnknownModelError,
    UnknownValidationError,
    UnsupportedModelError,
)
from serve_app.db import registry as rows
from serve_app.protocol import ModelInfo, ValidateResponse

VALIDATION_TTL_S = 24 * 3600
NAMESPACE = "tessera"


class ModelRecord(BaseModel):
    """An imported model: what the API shows, and what the family server loads."""

    info: ModelInfo
    source: str  # a LoRA model's: its base's
    license_accepted: bool = False
    adapter: str | None = None  # a LoRA model: where its adapter file is found again
    adapter_sha256: str | None = None


def model_slug(hf_model_id: str) -> str:
    name = hf_model_id.rstrip("/").split("/")[-1].lower()
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")[:40] or "model"


class ModelRegistry:
    def __init__(self, db_url: str, legacy_models_json: str | None = None,
                 limits: LimitSettings | None = None):
        from serve_app.db.engine import make_engine, migrate

        self.limits = limits or LimitSettings()
        self.engine = make_engine(db_url)
        migrate(self.engine)
        # an imported model never changes: once read, it is served from here (every
        # submission looks its model up)
        self._records: dict[str, ModelRecord] = {}
        if legacy_models_json and Path(legacy_models_json).exists():
            self._import_legacy(Path(legacy_models_json))

    def admit_validation(self, tenant: str) -> None:
        """429 once the tenant has made `max_validations_per_hour` validations this hour
        (validating reads checkpoints and may fetch them: work for the server)."""
        self._within(tenant, "validations", self.limits.max_validations_per_hour,
                     "validations")

    def _within(self, tenant: str, table: str, limit: int, what: str) -> None:
        made = self._db(rows.recent, table, tenant, time.time() - 3600)
        if made >= limit:
            raise RateLimitedError(f"you made {made} {what} in the last hour, the most "
                                   "allowed; try again later", headers={"Retry-After": "60"})

    def add_validation(self, tenant: str, validation: ValidateResponse) -> None:
        now = time.time()
        self._db(rows.put_validation, validation.validation_id, tenant, now,
                            validation.model_dump(mode="json"), now - VALIDATION_TTL_S)

    def import_model(self, tenant: str, validation_id: str, accepted_license: bool,
                     execution_mode: str, name: str | None = None) -> ModelInfo:
        found = self._db(rows.get_validation, validation_id, tenant,
                                    time.time() - VALIDATION_TTL_S)
        if found is None:
            raise UnknownValidationError(f"no validation {validation_id!r}; call "
                                         "/v1/my-models/validate-hf first", param="validation_id")
        v = ValidateResponse.model_validate(found)
        self._within(tenant, "models", self.limits.max_imports_per_hour, "imports")
        if not v.supported:
            raise UnsupportedModelError(f"{v.hf_model_id} cannot be imported: "
                                        + "; ".join(v.errors), param="validation_id")
        if v.requires_license_acceptance and not accepted_license:
            raise LicenseNotAcceptedError(
                f"{v.hf_model_id} is under the licence {v.license or 'unknown'!r}, which "
                "requires acceptance: send accepted_license: true to accept it",
                param="accepted_license")
        model_id = f"tm_{model_slug(v.hf_model_id)}_{secrets.token_hex(4)}"
        info = ModelInfo(id=model_id, owned_by=tenant, name=name, hf_model_id=v.hf_model_id,
                         family=v.family, pipeline_tag=v.pipeline_tag, tasks=v.tasks,
                         license=v.license or "unknown",
                         requires_license_acceptance=v.requires_license_acceptance,
                         pricing=v.pricing, parameters=v.parameters, created_at=time.time(),
                         execution_mode=execution_mode, kind=v.kind, base_model=v.base_model,
                         supports_loras=v.supports_loras)
        record = ModelRecord(info=info, source=v.source, license_accepted=accepted_license,
                             adapter=v.adapter_source, adapter_sha256=v.sha256)
        self._db(rows.put_model, model_id, tenant, info.created_at,
                       record.model_dump(mode="json"))
        return info

    def get(self, tenant: str, model_id: str) -> ModelRecord:
        record = self._records.get(model_id)
        if record is None:
            found = self._db(rows.get_model, model_id)
            record = None if found is None else ModelRecord.model_validate(found)
            if record is not None:
                self._records[model_id] = record
        # Another tenant's model answers exactly like a missing one: ids are not secrets, but
        # their existence should not leak across tenants.
        if record is None or record.info.owned_by != tenant:
            raise UnknownModelError(
                f"model {model_id!r} not found: call a catalog model by name (GET /v1/models), "
                "or import one with /v1/my-models/import-hf and use the tm_* id it returns",
                param="model")
        return record

    def list(self, tenant: str) -> list[ModelInfo]:
        return [ModelRecord.model_validate(r).info
                for r in self._db(rows.tenant_models, tenant)]

    def add_upload(self, tenant: str, upload_id: str, key: str, content_type: str,
                   expires_at: float, size: int) -> None:
        """Record an upload link, within the tenant's quota of links not yet expired."""
        now = time.time()
        count, declared = self._db(rows.pending_uploads, tenant, now)
        if count >= self.limits.max_pending_uploads:
            raise RateLimitedError(f"you have {count} upload links open, the most allowed; "
                                   "use or let some expire", headers={"Retry-After": "60"})
        if declared + size > self.limits.max_pending_upload_bytes:
            raise RateLimitedError(
                f"your open upload links already declare {declared} bytes; this one would "
                f"pass the {self.limits.max_pending_upload_bytes}-byte quota",
                param="size", headers={"Retry-After": "60"})
        self._db(rows.put_upload, upload_id, tenant, key, content_type, now, expires_at, size)

    def find_upload(self, tenant: str, upload_id: str) -> tuple[str, str, int | None] | None:
        """(key, content type, declared size) of the tenant's upload: another tenant's id is
        never found."""
        return self._db(rows.get_upload, upload_id, tenant)

    def _db(self, fn, *args):
        """A database that is away answers 503 with Retry-After, never a 500."""
        from sqlalchemy.exc import DBAPIError

        from serve_app.db.engine import run

        try:
            return run(fn, self.engine, *args)
        except DBAPIError as exc:
            raise ServiceUnavailableError(
                f"the model database is unavailable: {type(exc.orig).__name__}",
                headers={"Retry-After": "5"}) from None

    def _import_legacy(self, path: Path) -> None:
        for model_id, raw in json.loads(path.read_text()).items():
            record = ModelRecord.model_validate(raw)
            if self._db(rows.get_model, model_id) is None:
                self._db(rows.put_model, model_id, record.info.owned_by,
                               record.info.created_at or time.time(),
                               record.model_dump(mode="json"))
        os.replace(path, path.with_suffix(".json.imported"))


# restarted by Ray when its process dies (its state is in the database); calls in flight are
# retried
ModelRegistryActor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(ModelRegistry)


def model_registry(config):
    from serve_app.db.engine import database_url
    from serve_app.tasks.actor import ON_HEAD

    return ModelRegistryActor.options(
        name=f"{config.instance}-models", namespace=NAMESPACE, lifetime="detached",
        get_if_exists=True, resources=ON_HEAD).remote(
        database_url(config), str(Path(config.data_dir) / "models.json"), config.limits)
