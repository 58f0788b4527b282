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

import yaml

from deployments.loading import (
    OVERRIDE_SEP,
    TRANSFORMER_FILE,
    ensure_tiny_checkpoint,
    explain_build_error,
)
from deployments.registry import FAMILIES, TINY_PREFIX, family_for_pipeline
from serve_app.catalog import CATALOG, find_entry, model_terms
from serve_app.hub import cached_file, hub_offline, locate_on_hub, read_model_card
from serve_app.protocol import ValidateResponse

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


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):  # a name too long for the filesystem, a NUL byte: not a dir
        return False


def models_dir_path(model_id: str, models_dir: Path) -> Path | None:
    """The directory `model_id` names inside models_dir (relative to it, or absolute), with
    symlinks and `..` resolved before the check; None for anything else."""
    try:
        root = models_dir.resolve()
        given = Path(model_id)
        resolved = (given if given.is_absolute() else root / given).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if resolved == root or not resolved.is_relative_to(root) or not _is_dir(resolved):
        return None
    return resolved


PICKLE_SUFFIXES = (".bin", ".bin.index.json", ".pt", ".ckpt")


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
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        return None
    try:
        meta = yaml.safe_load(text[3:end]) or {}
    except yaml.YAMLError:
        return None
    if not isinstance(meta, dict):
        return None
    lic = meta.get("license")
    if isinstance(lic, list):
        lic = lic[0] if lic else None
    if lic == "other" and meta.get("license_name"):
        lic = meta["license_name"]
    return str(lic) if lic else None


def validate(model_id: str, config, validation_id: str) -> ValidateResponse:
    """Everything `validate-hf` answers, including where it looked when it found nothing."""
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
    out.supported = not out.errors
    return out


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
