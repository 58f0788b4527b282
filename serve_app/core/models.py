"""Models, as the domain knows them: where a model's weights are (`ModelSource`), where a LoRA
adapter is (`AdapterSource`), a model a tenant can call (`ModelRecord`) and a stored
`validate-hf` outcome (`Validation`).

The model registry stores these and the task record carries a `ModelSource`; nothing here knows
the HTTP schema (the wire views map them), so a change to the API never changes what is stored.
Names with structure are parsed once, here, into these values: the `tm_` prefix of a tenant's
model, the built-in tiny ids, an adapter path's kind.
"""

from __future__ import annotations

import re
import secrets
from typing import Literal

from pydantic import BaseModel, ConfigDict

from serve_app.core.errors import LoraUnreachableError
from serve_app.core.types import TINY_PREFIX, ModelSource, ParameterSpec

TENANT_MODEL_PREFIX = "tm_"
# a family's built-in tiny LoRA repository is `tessera/tiny-<family>-lora`
TINY_LORA_SUFFIX = "-lora"

NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
REPO_ID_RE = re.compile(rf"^{NAME}/{NAME}$")  # a Hugging Face repository: owner/name
# a Hub adapter: owner/name, or owner/name/<file in the repository>
HUB_ADAPTER_RE = re.compile(rf"^(?P<repo>{NAME}/{NAME})(?:/(?P<file>[A-Za-z0-9_./-]+))?$")

ModelKind = Literal["pipeline", "lora", "controlnet"]


def is_tenant_model(name: str) -> bool:
    """Whether a model name is a tenant's imported model (`tm_...`), not a catalog name."""
    return name.startswith(TENANT_MODEL_PREFIX)


def new_model_id(hf_model_id: str) -> str:
    """A fresh `tm_<slug>_<8 hex>` id for an import of `hf_model_id`."""
    name = hf_model_id.rstrip("/").split("/")[-1].lower()
    slug = re.sub(r"[^a-z0-9]+", "-", name).strip("-")[:40] or "model"
    return f"{TENANT_MODEL_PREFIX}{slug}_{secrets.token_hex(4)}"


AdapterKind = Literal["model", "url", "tiny", "hub", "local"]


class AdapterSource(BaseModel):
    """Where a LoRA adapter is:

    - `model`: a tenant's imported LoRA model (`name` is its tm_* id);
    - `url`: an http(s) URL of a .safetensors file;
    - `tiny`: a built-in `tessera/tiny-<family>-lora` repository;
    - `hub`: a Hugging Face repository `owner/name`;
    - `local`: a directory under the models directory (an imported model's, never a
      request's).

    `file` names one file of a repository or directory; None: its one adapter file.
    """

    model_config = ConfigDict(frozen=True)

    kind: AdapterKind
    name: str
    file: str | None = None

    @classmethod
    def parse(cls, path: str, param: str) -> AdapterSource:
        """A request's `loras[i].path`: a tm_* model, a URL, a tiny adapter or a Hub id."""
        if is_tenant_model(path):
            return cls(kind="model", name=path)
        if path.startswith(("http://", "https://")):
            return cls(kind="url", name=path)
        found = HUB_ADAPTER_RE.match(path)
        if found is None or ".." in path:
            raise LoraUnreachableError(
                f"{param}: {path!r} is not a LoRA this server can reach: give a tm_* LoRA model "
                "you imported, a Hugging Face repo id (owner/name or owner/name/file.safetensors) "
                "or an http(s) URL of a .safetensors file", param=param)
        repo = found["repo"]
        kind = "tiny" if repo.startswith(TINY_PREFIX) and repo.endswith(TINY_LORA_SUFFIX) else "hub"
        return cls(kind=kind, name=repo, file=found["file"])

    @property
    def tiny_family(self) -> str | None:
        """A tiny adapter's family (`tessera/tiny-<family>-lora`)."""
        if self.kind != "tiny":
            return None
        return self.name[len(TINY_PREFIX):-len(TINY_LORA_SUFFIX)]

    def __str__(self) -> str:
        return self.name if self.file is None else f"{self.name}/{self.file}"


class ModelRecord(BaseModel):
    """A model a tenant can call: its own imported `tm_*` model, or a catalog model (owned by
    `tessera`). What the API shows, and what the family server loads."""

    id: str
    tenant: str
    hf_model_id: str
    family: str
    source: ModelSource  # a LoRA model's: its base's; a ControlNet's: its own weights
    kind: ModelKind = "pipeline"
    name: str | None = None
    license: str = "unknown"
    requires_license_acceptance: bool = False
    license_accepted: bool = False
    price_per_image: float
    currency: str = "USD"
    parameters: ParameterSpec
    created_at: float | None = None
    execution_mode: str | None = None
    base_model: str | None = None  # a LoRA model: the base it runs on, as named at import
    adapter: AdapterSource | None = None  # a LoRA model: where its adapter file is found again
    adapter_sha256: str | None = None


class Validation(BaseModel):
    """What `validate-hf` found, kept for 24 h for the `import-hf` that names it."""

    id: str
    hf_model_id: str
    supported: bool = False
    errors: list[str] = []
    warnings: list[str] = []
    family: str | None = None
    pipeline_class: str | None = None
    license: str | None = None
    requires_license_acceptance: bool = False
    price_per_image: float | None = None
    currency: str = "USD"
    parameters: ParameterSpec | None = None
    source: ModelSource | None = None  # where the weights were found
    kind: ModelKind = "pipeline"
    # LoRA repositories
    base_model: str | None = None
    adapter: AdapterSource | None = None
    rank: int | None = None
    target_modules: list[str] = []
    size: int | None = None
    sha256: str | None = None
