"""`validate-hf`: find a checkpoint, read its model_index.json, decide whether Tessera serves it.

An id is one of: a built-in `tessera/tiny-<family>`, a local directory holding a diffusers
checkpoint, or a Hugging Face repo id (looked up in the local HF cache, and on the Hub unless
`HF_HUB_OFFLINE` is set). Everything here is blocking file and network I/O: callers run it in a
thread.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import serve_app.lora_repos as lora_repos
from deployments.adapters import (
    converted_by,
    family_takes_loras,
    misfits,
    prefixed,
)
from deployments.loading import (
    OVERRIDE_SEP,
    TRANSFORMER_FILE,
    ensure_tiny_checkpoint,
    explain_build_error,
)
from deployments.registry import FAMILIES, TINY_PREFIX, family_for_pipeline
from deployments.tiny_lora import tiny_lora_family
from serve_app.catalog import CATALOG, find_entry, model_terms
from serve_app.core import lora
from serve_app.core.errors import TesseraError
from serve_app.core.paths import models_dir_path
from serve_app.hub import (
    cached_file,
    front_matter,
    hub_offline,
    hub_unreachable,
    locate_on_hub,
    read_model_card,
)
from serve_app.lora_repos import FoundAdapter
from serve_app.protocol import ModelInfo, ValidateResponse

logger = logging.getLogger("tessera.validation")

REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json",
                   ".gguf", ".pt", ".ckpt")


@dataclass
class Located:
    source: str | None = None  # what the family deployment loads
    root: Path | None = None  # a local directory holding model_index.json
    hub: bool = False
    looked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def locate(model_id: str, config) -> Located:
    if model_id.startswith(TINY_PREFIX):
        spec = FAMILIES.get(model_id[len(TINY_PREFIX):])
        if spec is None or spec.build_tiny is None:
            known = sorted(e for e in CATALOG if e.startswith(TINY_PREFIX))
            return Located(errors=[f"no built-in tiny checkpoint {model_id!r}; known: {known}"])
        try:
            root = ensure_tiny_checkpoint(config.data_dir, spec)
        except Exception as exc:  # e.g. a component whose library needs a missing package
            return Located(looked=["built-in tiny checkpoints"], errors=[
                f"the tiny {spec.name} checkpoint could not be built here: "
                f"{explain_build_error(exc)}"])
        return Located(source=model_id, root=root, looked=["built-in tiny checkpoints"])
    path = models_dir_path(model_id, config.models_path)
    if path is not None:
        return Located(source=str(path), root=path, looked=["the models directory"])
    if model_id.startswith(("/", ".", "~")) or not REPO_ID_RE.match(model_id):
        # one answer for every path that is not a model directory under models_dir, whatever
        # is there: a tenant learns nothing of the server's files
        return Located(looked=["the models directory"],
                       errors=[f"{model_id!r} is neither a model directory under the models "
                               "directory nor a Hugging Face repo id of the form owner/name"])
    found = Located(source=model_id, hub=True)
    locate_on_hub(model_id, found)
    return found


PICKLE_SUFFIXES = (*lora_repos.PICKLES, ".bin.index.json")


def _missing_weights(root: Path, model_index: dict) -> tuple[list[str], list[str]]:
    """(components without weights, components whose only weights are pickles)."""
    missing, pickled = [], []
    for name, value in model_index.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        folder = root / name
        if not folder.is_dir():
            missing.append(name)
            continue
        # Models keep a config.json beside their weights; tokenizers, schedulers, guiders and
        # processors keep other configs and carry no weights.
        if not (folder / "config.json").exists():
            continue
        weights = [p.name for p in folder.iterdir() if p.name.endswith(WEIGHT_SUFFIXES)]
        if not weights:
            missing.append(name)
        elif all(w.endswith(PICKLE_SUFFIXES) for w in weights):
            pickled.append(name)
    return missing, pickled


def _read_license(root: Path | None, repo_id: str, hub: bool) -> str | None:
    text = None
    if root is not None and (root / "README.md").exists():
        text = (root / "README.md").read_text(errors="replace")
    elif hub:
        text = read_model_card(repo_id)
    return license_from_model_card(text) if text else None


def license_from_model_card(text: str) -> str | None:
    """The `license:` of a model card's YAML front matter (`license_name:` when it is "other")."""
    meta = front_matter(text)
    lic = meta.get("license")
    if isinstance(lic, list):
        lic = lic[0] if lic else None
    if lic == "other" and meta.get("license_name"):
        lic = meta["license_name"]
    return str(lic) if lic else None


def validate(model_id: str, config, validation_id: str, base_model: str | None = None,
             tenant_base: tuple[ModelInfo, str] | None = None) -> ValidateResponse:
    """Everything `validate-hf` answers, including where it looked when it found nothing.
    A LoRA repository is validated with its base: `base_model` (a catalog name or Hub id), or
    `tenant_base` (the tenant's own tm_* model and its source, resolved by the caller), or the
    base its model card names."""
    try:
        adapter = _find_lora(model_id, config)
    except TesseraError as exc:
        return ValidateResponse(validation_id=validation_id, hf_model_id=model_id,
                                supported=False, kind="lora", errors=[exc.message])
    if adapter is not None:
        return validate_lora(model_id, adapter, config, validation_id, base_model, tenant_base)
    # A catalog model however it is named (letter case, short name) is that catalog model:
    # its price and whether the operator enabled it follow it.
    entry = find_entry(model_id)
    if entry is not None:
        model_id = entry.id
        enabled = config.catalog.enabled
        if enabled is not None and not entry.builtin_tiny and entry.id not in enabled:
            return ValidateResponse(
                validation_id=validation_id, hf_model_id=model_id, supported=False,
                errors=[f"{model_id} is not enabled on this server (config catalog.enabled)"],
                license=entry.license)
    if entry is not None and entry.unsupported_reason:
        return ValidateResponse(validation_id=validation_id, hf_model_id=model_id,
                                supported=False, errors=[entry.unsupported_reason],
                                license=entry.license)
    if entry is not None and entry.base_model:
        return _validate_finetune(model_id, entry, config, validation_id)
    located = locate(model_id, config)
    out = ValidateResponse(validation_id=validation_id, hf_model_id=model_id, supported=False,
                           errors=list(located.errors), warnings=list(located.warnings))
    if located.errors or located.root is None:
        if not out.errors:
            out.errors.append(f"{model_id}: not found (looked in: {', '.join(located.looked)})")
        return out
    # no server path in any answer: messages name the model as the tenant gave it
    index_path = located.root / "model_index.json"
    if not index_path.exists():
        out.errors.append(f"{model_id} has no model_index.json: it is not a diffusers "
                          "pipeline checkpoint")
        return out
    try:
        model_index = json.loads(index_path.read_text())
        class_name = str(model_index["_class_name"])
    except (ValueError, KeyError, TypeError) as exc:
        out.errors.append(f"{model_id}: model_index.json is not valid: {exc}")
        return out
    out.pipeline_class = class_name
    spec = family_for_pipeline(class_name)
    if spec is None:
        out.errors.append(f"pipeline class {class_name} is not supported; supported classes: "
                          f"{sorted(c for s in FAMILIES.values() for c in s.pipeline_classes)}")
        return out
    out.family = spec.name
    if spec.name not in config.enabled_families():
        out.errors.append(f"family {spec.name} is not deployed on this server; enable it under "
                          "families in the config")
    missing, pickled = _missing_weights(located.root, model_index)
    if pickled and not config.allow_pickle_weights:
        out.errors.append(f"components {pickled} have only pickle weights (.bin, .pt, .ckpt), "
                          "which this server does not load: convert them to safetensors")
    if missing:
        where = ", ".join(located.looked)
        if located.hub and not hub_offline():
            out.warnings.append(f"weights of {missing} are not in the local cache; they will be "
                                "downloaded from the Hub on first use")
        else:
            out.errors.append(f"weights of components {missing} were not found (looked in: "
                              f"{where})")
    if entry is None:
        out.warnings.append("not in the built-in catalog: the family's default parameters apply")
    licence = ((entry.license if entry else None)
               or _read_license(located.root, model_id, located.hub))
    if licence is None:
        out.warnings.append("no licence found in the model card; import requires accepting it")
    out.tasks, out.pipeline_tag = spec.tasks, spec.pipeline_tag
    _set_terms(out, model_id, spec.name, licence,
               (entry.parameters if entry else None) or spec.parameters, config)
    out.source = located.source
    out.supports_loras = family_takes_loras(spec.name)
    out.supported = not out.errors
    return out


def _find_lora(model_id: str, config) -> FoundAdapter | None:
    """The adapter, when `model_id` names a LoRA repository rather than a pipeline."""
    param = "hf_model_id"
    parts = model_id.split("/")
    if len(parts) >= 2 and tiny_lora_family("/".join(parts[:2])):
        return lora_repos.find(model_id, config.data_dir, config.models_path, param)
    local = models_dir_path(model_id, config.models_path)
    if local is not None:
        names = {p.name for p in local.iterdir()}
        if "model_index.json" in names or not any(
                n.endswith((".safetensors", *lora_repos.PICKLES)) for n in names):
            return None
        return lora_repos.find(str(local), config.data_dir, config.models_path, param,
                               local=True)
    found = lora_repos.HUB_ADAPTER_RE.match(model_id)
    if found is None or ".." in model_id or model_id.startswith(TINY_PREFIX):
        return None
    if found["file"]:
        return lora_repos.find(model_id, config.data_dir, config.models_path, param)
    return _hub_lora(model_id, config)


def _hub_lora(repo: str, config) -> FoundAdapter | None:
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        if isinstance(try_to_load_from_cache(repo, "model_index.json"), str):
            return None
        cached_readme = try_to_load_from_cache(repo, "README.md")
    except Exception:  # not a valid repo id: the pipeline path says so
        return None
    if isinstance(cached_readme, str):
        files = {p.name for p in Path(cached_readme).parent.iterdir()}
        if "model_index.json" not in files and any(f.endswith(".safetensors") for f in files):
            return lora_repos.find(repo, config.data_dir, config.models_path, "hf_model_id")
        return None
    if hub_offline() or hub_unreachable(constants.ENDPOINT):
        return None
    try:
        from huggingface_hub import HfApi

        files = set(HfApi().list_repo_files(repo))
    except Exception:
        return None
    if "model_index.json" in files or not any(f.endswith(".safetensors") for f in files):
        return None
    return lora_repos.find_hub(repo, lora_repos.pick_file(sorted(files), repo, "hf_model_id"),
                               "hf_model_id")


def validate_lora(model_id: str, adapter: FoundAdapter, config, validation_id: str,
                  base_model: str | None, tenant_base: tuple[ModelInfo, str] | None
                  ) -> ValidateResponse:
    """A LoRA repository: its adapter checked (safetensors only, caps, LoRA tensors), its base
    validated as a pipeline, and its keys and shapes checked against the base's modules."""
    out = ValidateResponse(validation_id=validation_id, hf_model_id=model_id, supported=False,
                           kind="lora", adapter_source=adapter.location)
    limits = config.loras
    try:
        data = lora_repos.read(adapter, limits.max_bytes, "hf_model_id")
        info = lora.inspect(data, param="hf_model_id", max_bytes=limits.max_bytes,
                            max_tensors=limits.max_tensors, max_rank=limits.max_rank)
    except TesseraError as exc:
        out.errors.append(f"{model_id} has no model_index.json, so it is not a diffusers "
                          f"pipeline checkpoint, and it holds no usable LoRA adapter: "
                          f"{exc.message}")
        return out
    out.rank, out.target_modules = info.rank, info.target_modules
    out.size, out.sha256 = info.size, info.sha256
    base_id = (tenant_base[0].id if tenant_base else None) or base_model or (
        adapter.card_base_model)
    out.base_model = base_id
    if base_id is None:
        out.errors.append(f"{model_id}'s model card names no base_model: send base_model "
                          "(a tm_* id, a catalog name or a Hub id)")
        return out
    if tenant_base is not None:
        base_info, source = tenant_base
        if base_info.kind != "pipeline":
            out.errors.append(f"base_model {base_id} is itself a LoRA")
            return out
        out.family, out.tasks, out.pipeline_tag = (base_info.family, base_info.tasks,
                                                   base_info.pipeline_tag)
        out.license, out.pricing, out.parameters = (base_info.license, base_info.pricing,
                                                    base_info.parameters)
        out.source = source
    else:
        base = validate(base_id, config, validation_id)
        if base.kind == "lora":
            out.errors.append(f"base_model {base_id} is itself a LoRA")
            return out
        out.errors += [f"base model {base_id}: {e}" for e in base.errors]
        out.warnings += [f"base model {base_id}: {w}" for w in base.warnings]
        for name in ("family", "pipeline_class", "pipeline_tag", "tasks", "license",
                     "requires_license_acceptance", "pricing", "parameters", "source"):
            setattr(out, name, getattr(base, name))
    if out.family is None:
        if not out.errors:
            out.errors.append(f"base model {base_id} could not be resolved")
        return out
    out.supports_loras = family_takes_loras(out.family)
    if not out.supports_loras:
        out.errors.append(f"{FAMILIES[out.family].display_name} models take no LoRA adapters")
    elif out.source:
        _check_fit(out, data, out.source, config)
    out.supported = not out.errors
    return out


def _check_fit(out: ValidateResponse, data: bytes, source: str, config) -> None:
    """Keys and shapes against the base's modules, from the base checkpoint's weight headers
    where they are on this machine (kohya and xlabs names converted first, by the base
    pipeline's own loader); otherwise the replica checks at first use."""
    shapes = lora_repos.base_shapes(source, config.data_dir, config.models_path)
    if not shapes:
        out.warnings.append("the adapter's fit to the base is checked when it is first used "
                            "(the base's weights are not on this machine)")
        return
    adapter = lora.header_shapes(data)
    try:
        if not prefixed(adapter, set(shapes)):
            _, tensors = lora.load(data, param="hf_model_id", max_bytes=len(data),
                                   max_tensors=config.loras.max_tensors,
                                   max_rank=config.loras.max_rank)
            pipeline = out.pipeline_class or next(iter(FAMILIES[out.family].pipelines.values()))
            adapter = {k: list(v.shape) for k, v in converted_by(pipeline, tensors).items()}
    except TesseraError as exc:
        out.errors.append(exc.message)
        return
    problems = misfits(adapter, shapes)
    if problems:
        out.errors.append(f"the adapter does not fit {out.base_model}: " + "; ".join(problems))


def _set_terms(out: ValidateResponse, model_id: str, family: str, licence: str | None,
               parameters, config) -> None:
    """Licence, price and parameter bounds: what an import agrees to."""
    terms = model_terms(model_id, family, licence, parameters, config)
    out.license, out.requires_license_acceptance = terms.license, terms.requires_license_acceptance
    out.pricing, out.parameters = terms.pricing, terms.parameters


def _validate_finetune(model_id: str, entry, config, validation_id: str) -> ValidateResponse:
    """A transformer fine-tune: the base pipeline must validate, and its weights be reachable."""
    out = validate(entry.base_model, config, validation_id)
    out.hf_model_id = model_id
    # A fine-tune repo holds transformer weights only, no model_index.json: look for the file.
    local = models_dir_path(model_id, config.models_path)
    if local is not None:
        weights, where = local / TRANSFORMER_FILE, "the models directory"
    else:
        weights, where = cached_file(model_id, TRANSFORMER_FILE)
    if weights is None or not weights.exists():
        if local is None and not hub_offline():
            out.warnings.append(f"{model_id}/{TRANSFORMER_FILE} is not cached; it will be "
                                "downloaded on first use")
        else:
            out.errors.append(f"{model_id}: transformer weights {TRANSFORMER_FILE} not found "
                              f"(looked in: {where})")
    _set_terms(out, model_id, entry.family, entry.license, entry.parameters or out.parameters,
               config)
    out.warnings = [w for w in out.warnings if "not in the built-in catalog" not in w]
    out.warnings.append(f"runs {model_id}'s transformer on the {entry.base_model} pipeline")
    out.supported = not out.errors and out.family is not None
    if out.source:
        out.source = f"{out.source}{OVERRIDE_SEP}{model_id}"
    return out
