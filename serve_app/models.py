"""Validations and imported models, per tenant.

`ModelRegistry` holds the state and the rules; `ModelRegistryActor` is the named Ray actor that
owns the one copy every ingress replica talks to. What crosses to and from it is typed
(`ValidateResponse`, `ModelRecord`, `ModelInfo`). Imported models are written to the data dir so
they survive a restart; validations are short-lived and kept in memory.
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

from serve_app.core.errors import (
    LicenseNotAcceptedError,
    UnknownModelError,
    UnknownValidationError,
    UnsupportedModelError,
)
from serve_app.protocol import ModelInfo, ValidateResponse

VALIDATION_TTL_S = 24 * 3600
NAMESPACE = "tessera"


class ModelRecord(BaseModel):
    """An imported model: what the API shows, and what the family server loads."""

    info: ModelInfo
    source: str
    license_accepted: bool = False


def model_slug(hf_model_id: str) -> str:
    name = hf_model_id.rstrip("/").split("/")[-1].lower()
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")[:40] or "model"


class ModelRegistry:
    def __init__(self, state_path: str | None = None):
        self._state_path = Path(state_path) if state_path else None
        self._validations: dict[str, tuple[str, float, ValidateResponse]] = {}
        self._models: dict[str, ModelRecord] = {}
        if self._state_path and self._state_path.exists():
            self._models = {k: ModelRecord.model_validate(v) for k, v in
                            json.loads(self._state_path.read_text()).items()}

    def add_validation(self, tenant: str, validation: ValidateResponse) -> None:
        now = time.time()
        self._validations = {k: v for k, v in self._validations.items()
                             if now - v[1] < VALIDATION_TTL_S}
        self._validations[validation.validation_id] = (tenant, now, validation)

    def import_model(self, tenant: str, validation_id: str, accepted_license: bool,
                     execution_mode: str, name: str | None = None) -> ModelInfo:
        found = self._validations.get(validation_id)
        if found is None or found[0] != tenant:
            raise UnknownValidationError(f"no validation {validation_id!r}; call "
                                         "/v1/my-models/validate-hf first", param="validation_id")
        v = found[2]
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
                         execution_mode=execution_mode)
        self._models[model_id] = ModelRecord(info=info, source=v.source,
                                             license_accepted=accepted_license)
        self._save()
        return info

    def get(self, tenant: str, model_id: str) -> ModelRecord:
        record = self._models.get(model_id)
        # Another tenant's model answers exactly like a missing one: ids are not secrets, but
        # their existence should not leak across tenants.
        if record is None or record.info.owned_by != tenant:
            raise UnknownModelError(
                f"model {model_id!r} not found; import it with /v1/my-models/import-hf and use "
                "the tm_* id it returns", param="model")
        return record

    def list(self, tenant: str) -> list[ModelInfo]:
        return [r.info for r in self._models.values() if r.info.owned_by == tenant]

    def _save(self) -> None:
        if self._state_path is None:
            return
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: r.model_dump(mode="json") for k, r in self._models.items()}))
        os.replace(tmp, self._state_path)


ModelRegistryActor = ray.remote(num_cpus=0)(ModelRegistry)


def model_registry(instance: str, data_dir: str):
    from serve_app.tasks.actor import ON_HEAD

    return ModelRegistryActor.options(
        name=f"{instance}-models", namespace=NAMESPACE, lifetime="detached",
        get_if_exists=True, resources=ON_HEAD).remote(str(Path(data_dir) / "models.json"))
