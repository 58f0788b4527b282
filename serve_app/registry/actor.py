"""Validations, imported models and uploads, per tenant.

`ModelRegistry` holds the rules; `ModelRegistryActor` is the named Ray actor every ingress
replica talks to, restarted by Ray when its process dies. Its state is in the database (so a
restart loses nothing); what crosses to and from it is typed (`Validation`, `ModelRecord`).

It also does the model side's heavy work that an ingress must not: `validate-hf` (which reads
checkpoints, may build a tiny one and may read an adapter's keys through diffusers) and making
a built-in tiny LoRA. The actor is threaded (`max_concurrency`), so one tenant's slow
validation does not hold another's calls.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import ray

from serve_app.core.config import LimitSettings, TesseraConfig
from serve_app.core.errors import (
    LicenseNotAcceptedError,
    RateLimitedError,
    ServiceUnavailableError,
    UnknownModelError,
    UnknownValidationError,
    UnsupportedModelError,
)
from serve_app.core.models import ModelRecord, Validation, is_tenant_model, new_model_id
from serve_app.db import registry as rows

VALIDATION_TTL_S = 24 * 3600
NAMESPACE = "tessera"
# State actors live on the head node: GPU workers come and go with the autoscaler, and the
# single writers of task and model state must not go with them.
ON_HEAD = {"node:__internal_head__": 0.001}
# validations (and tiny adapters being made) at once; the rest of the calls are quick
MAX_CONCURRENCY = 16


class ModelRegistry:
    def __init__(self, db_url: str, config: TesseraConfig | None = None,
                 legacy_models_json: str | None = None):
        # Imported here, in the actor's own process: validation brings the model side's
        # loaders, and an ingress imports this module only to reach the actor.
        from serve_app.db.engine import make_engine, migrate
        from serve_app.registry.validation import Validator

        self.config = config or TesseraConfig()
        self.limits: LimitSettings = self.config.limits
        self.validator = Validator(self.config)
        self.engine = make_engine(db_url)
        migrate(self.engine)
        # an imported model never changes: once read, it is served from here (every
        # submission looks its model up)
        self._records: dict[str, ModelRecord] = {}
        if legacy_models_json and Path(legacy_models_json).exists():
            self._import_legacy(Path(legacy_models_json))

    def validate(self, tenant: str, hf_model_id: str, validation_id: str,
                 base_model: str | None = None) -> Validation:
        """validate-hf, within the tenant's hourly quota, kept for the import that names it.
        A `tm_*` base_model is the tenant's own model (404 for anyone else's)."""
        self._within(tenant, "validations", self.limits.max_validations_per_hour,
                     "validations")
        tenant_base = None
        if base_model is not None and is_tenant_model(base_model):
            try:
                tenant_base = self.get(tenant, base_model)
            except UnknownModelError as exc:
                raise UnknownModelError(exc.message, param="base_model") from None
        validation = self.validator.validate(hf_model_id, validation_id, base_model,
                                             tenant_base)
        now = time.time()
        self._db(rows.put_validation, validation.id, tenant, now,
                 validation.model_dump(mode="json"), now - VALIDATION_TTL_S)
        return validation

    def tiny_adapter(self, family: str) -> None:
        """Make the family's built-in tiny LoRA where it is missing (the ingress reads it)."""
        from deployments.adapters.tiny import ensure_tiny_lora

        ensure_tiny_lora(self.config.data_dir, family)

    def _within(self, tenant: str, table: str, limit: int, what: str) -> None:
        """429 once the tenant made `limit` of these in the last hour (validating reads
        checkpoints and may fetch them: work for the server)."""
        made = self._db(rows.recent, table, tenant, time.time() - 3600)
        if made >= limit:
            raise RateLimitedError(f"you made {made} {what} in the last hour, the most "
                                   "allowed; try again later", headers={"Retry-After": "60"})

    def import_model(self, tenant: str, validation_id: str, accepted_license: bool,
                     execution_mode: str, name: str | None = None) -> ModelRecord:
        found = self._db(rows.get_validation, validation_id, tenant,
                         time.time() - VALIDATION_TTL_S)
        if found is None:
            raise UnknownValidationError(f"no validation {validation_id!r}; call "
                                         "/v1/my-models/validate-hf first", param="validation_id")
        v = Validation.model_validate(found)
        self._within(tenant, "models", self.limits.max_imports_per_hour, "imports")
        if not v.supported:
            raise UnsupportedModelError(f"{v.hf_model_id} cannot be imported: "
                                        + "; ".join(v.errors), param="validation_id")
        if v.requires_license_acceptance and not accepted_license:
            raise LicenseNotAcceptedError(
                f"{v.hf_model_id} is under the licence {v.license or 'unknown'!r}, which "
                "requires acceptance: send accepted_license: true to accept it",
                param="accepted_license")
        record = ModelRecord(
            id=new_model_id(v.hf_model_id), tenant=tenant, hf_model_id=v.hf_model_id,
            family=v.family, source=v.source, kind=v.kind, name=name,
            license=v.license or "unknown",
            requires_license_acceptance=v.requires_license_acceptance,
            license_accepted=accepted_license, price_per_image=v.price_per_image,
            currency=v.currency, parameters=v.parameters, created_at=time.time(),
            execution_mode=execution_mode, base_model=v.base_model, adapter=v.adapter,
            adapter_sha256=v.sha256)
        self._db(rows.put_model, record.id, tenant, record.created_at,
                 record.model_dump(mode="json"))
        return record

    def get(self, tenant: str, model_id: str) -> ModelRecord:
        record = self._records.get(model_id)
        if record is None:
            found = self._db(rows.get_model, model_id)
            record = None if found is None else ModelRecord.model_validate(found)
            if record is not None:
                self._records[model_id] = record
        # Another tenant's model answers exactly like a missing one: ids are not secrets, but
        # their existence should not leak across tenants.
        if record is None or record.tenant != tenant:
            raise UnknownModelError(
                f"model {model_id!r} not found: call a catalog model by name (GET /v1/models), "
                "or import one with /v1/my-models/import-hf and use the tm_* id it returns",
                param="model")
        return record

    def list(self, tenant: str) -> list[ModelRecord]:
        return [ModelRecord.model_validate(r) for r in self._db(rows.tenant_models, tenant)]

    def add_upload(self, tenant: str, upload_id: str, key: str, content_type: str,
                   expires_at: float, size: int, name: str | None = None,
                   details: dict | None = None) -> None:
        """Record an upload link (or a file whose bytes came whole, with its name and
        details), within the tenant's quota of uploads not yet expired."""
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
        self._db(rows.put_upload, upload_id, tenant, key, content_type, now, expires_at, size,
                 name, details)

    def find_upload(self, tenant: str, upload_id: str) -> tuple[str, str, int | None] | None:
        """(key, content type, declared size) of the tenant's upload: another tenant's id is
        never found."""
        return self._db(rows.get_upload, upload_id, tenant)

    def find_file(self, tenant: str, upload_id: str) -> dict | None:
        """The tenant's upload, every column of it."""
        return self._db(rows.get_file, upload_id, tenant)

    def delete_upload(self, tenant: str, upload_id: str) -> bool:
        return self._db(rows.delete_upload, upload_id, tenant)

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
        """A `models.json` from before the database: its records, upgraded as migration 0004
        upgrades stored rows, go to the database once."""
        from serve_app.db.migrations.records import model_record

        for model_id, raw in json.loads(path.read_text()).items():
            if self._db(rows.get_model, model_id) is None:
                record = ModelRecord.model_validate(model_record(raw))
                self._db(rows.put_model, model_id, record.tenant,
                         record.created_at or time.time(), record.model_dump(mode="json"))
        os.replace(path, path.with_suffix(".json.imported"))


# restarted by Ray when its process dies (its state is in the database); calls in flight are
# retried
ModelRegistryActor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1,
                                max_concurrency=MAX_CONCURRENCY)(ModelRegistry)


def model_registry(config: TesseraConfig):
    """The instance's one model registry actor, created by whoever asks first."""
    from serve_app.db.engine import database_url

    return ModelRegistryActor.options(
        name=f"{config.instance}-models", namespace=NAMESPACE, lifetime="detached",
        get_if_exists=True, resources=ON_HEAD).remote(
        database_url(config), config, str(Path(config.data_dir) / "models.json"))
