"""`validate-hf`: find a checkpoint, read its model_index.json, decide whether Tessera serves it.

An id is one of: a built-in `tessera/tiny-<family>`, a directory under the models directory
holding a diffusers checkpoint, or a Hugging Face repo id (looked up in the local HF cache, and
on the Hub unless `HF_HUB_OFFLINE` is set); or any of these holding a LoRA adapter rather than
a pipeline. Everything here is blocking file and network I/O, and may build a tiny checkpoint or
read an adapter's keys through diffusers: it runs in the model registry actor, in a thread,
never in the ingress.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from deployments.adapters import files
from deployments.adapters.convert import converted_by
from deployments.adapters.fit import base_shapes, misfits, prefixed
from deployments.adapters.sources import PICKLES, AdapterFile, AdapterResolver
from deployments.adapters.tiny import ensure_tiny_lora
from deployments.helpers import TINY_HELPERS, ensure_helper
from deployments.loading import TRANSFORMER_FILE, ensure_tiny_checkpoint, explain_build_error
from deployments.registry import FAMILIES, family_for_pipeline
from serve_app.core.errors import LoraUnreachableError, TesseraError
from serve_app.core.hub import (
    cached_file,
    front_matter,
    hub_offline,
    hub_unreachable,
    read_model_card,
)
from serve_app.core.models import (
    HUB_ADAPTER_RE,
    REPO_ID_RE,
    AdapterSource,
    ModelRecord,
    Validation,
)
from serve_app.core.paths import models_dir_path
from serve_app.core.types import TINY_PREFIX, ModelSource, tiny_family
from serve_app.registry.catalog import CATALOG, find_entry, model_terms
from serve_app.registry.controlnets import (
    CONFIG,
    CONTROLNETS,
    FoundControlNet,
    is_controlnet_dir,
    locate_controlnet,
)

logger = logging.getLogger("tessera.validation")

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json",
                   ".gguf", ".pt", ".ckpt")
PICKLE_SUFFIXES = (*PICKLES, ".bin.index.json")
PARAM = "hf_model_id"


@dataclass
class Located:
    source: str | None = None  # what the family deployment loads
    root: Path | None = None  # a local directory holding model_index.json
    hub: bool = False
    looked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def locate(model_id: str, config, index_file: str = "model_index.json") -> Located:
    family = tiny_family(model_id)
    if family is not None:
        spec = FAMILIES.get(family)
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
    locate_on_hub(model_id, found, index_file)
    return found


def locate_on_hub(repo_id: str, found: Located, index_file: str = "model_index.json") -> None:
    """Fill `found` with where `repo_id`'s index file (a pipeline's model_index.json, a
    transformers model's config.json) is, or why it could not be had."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import (
        HFValidationError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
    )

    found.looked.append("the Hugging Face cache")
    try:
        cached = try_to_load_from_cache(repo_id, index_file)
    except HFValidationError as exc:  # e.g. "a--b/c", "a/b..c": shapes the Hub forbids
        found.errors.append(f"{repo_id!r} is not a valid Hugging Face repo id: {exc}")
        return
    if isinstance(cached, str):
        found.root = Path(cached).parent
        return
    not_cached = f"{repo_id}: {index_file} is not in the Hugging Face cache"
    if hub_offline():
        found.looked.append("the Hugging Face Hub (skipped: HF_HUB_OFFLINE is set)")
        found.errors.append(f"{not_cached} and HF_HUB_OFFLINE is set, so the Hub was not "
                            "asked: the weights could not be reached")
        return
    found.looked.append(f"the Hugging Face Hub at {constants.ENDPOINT}")
    unreachable = hub_unreachable(constants.ENDPOINT)
    if unreachable:
        found.errors.append(f"{not_cached}, and the Hub at {constants.ENDPOINT} could not be "
                            f"reached ({unreachable}): the weights could not be reached. "
                            "Put the model in the cache, or point HF_ENDPOINT at a mirror.")
        return
    try:
        found.root = Path(hf_hub_download(repo_id, index_file, etag_timeout=5)).parent
    except RemoteEntryNotFoundError:
        found.errors.append(f"{repo_id} has no {index_file} on the Hub: it is not a "
                            "diffusers pipeline checkpoint")
    except RepositoryNotFoundError:
        found.errors.append(f"{repo_id}: no such repository on the Hub at {constants.ENDPOINT} "
                            "(or it is private or gated: set HF_TOKEN)")
    except Exception as exc:  # LocalEntryNotFoundError (connection lost), timeouts, 5xx
        found.errors.append(f"{not_cached}, and the Hub at {constants.ENDPOINT} answered "
                            f"{type(exc).__name__}: {str(exc)[:200]}: the weights could not "
                            "be reached")


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


class Validator:
    """validate-hf for one server's config: pipelines, fine-tunes and LoRA repositories."""

    def __init__(self, config):
        self.config = config
        self.adapters = AdapterResolver(config.data_dir, config.models_path,
                                        config.loras.max_bytes, config.loras.url_timeout_s,
                                        config.inputs.allow_private_urls)

    def validate(self, model_id: str, validation_id: str, base_model: str | None = None,
                 tenant_base: ModelRecord | None = None) -> Validation:
        """Everything `validate-hf` answers, including where it looked when it found nothing.
        A LoRA repository is validated with its base: `tenant_base` (the tenant's own tm_*
        model), or `base_model` (a catalog name or Hub id), or the base its model card names."""
        try:
            controlnet = self._find_controlnet(model_id)
        except TesseraError as exc:
            return Validation(id=validation_id, hf_model_id=model_id, kind="controlnet",
                              errors=[exc.message])
        if controlnet is not None:
            return self._validate_controlnet(model_id, controlnet, validation_id)
        try:
            adapter = self._find_lora(model_id)
        except TesseraError as exc:
            return Validation(id=validation_id, hf_model_id=model_id, kind="lora",
                              errors=[exc.message])
        if adapter is not None:
            return self._validate_lora(model_id, adapter, validation_id, base_model, tenant_base)
        return self._validate_pipeline(model_id, validation_id)

    def _validate_pipeline(self, model_id: str, validation_id: str) -> Validation:
        config = self.config
        # A catalog model however it is named (letter case, short name) is that catalog model:
        # its price and whether the operator enabled it follow it.
        entry = find_entry(model_id)
        if entry is not None:
            model_id = entry.id
            enabled = config.catalog.enabled
            if enabled is not None and not entry.builtin_tiny and entry.id not in enabled:
                return Validation(id=validation_id, hf_model_id=model_id, license=entry.license,
                                  errors=[f"{model_id} is not enabled on this server (config "
                                          "catalog.enabled)"])
            if entry.unsupported_reason:
                return Validation(id=validation_id, hf_model_id=model_id, license=entry.license,
                                  errors=[entry.unsupported_reason])
            if entry.base_model:
                return self._validate_finetune(model_id, entry, validation_id)
        index_file = FAMILIES[entry.family].index_file if entry else "model_index.json"
        located = locate(model_id, config, index_file)
        out = Validation(id=validation_id, hf_model_id=model_id, errors=list(located.errors),
                         warnings=list(located.warnings))
        if located.errors or located.root is None:
            if not out.errors:
                out.errors.append(f"{model_id}: not found (looked in: "
                                  f"{', '.join(located.looked)})")
            return out
        # no server path in any answer: messages name the model as the tenant gave it
        index_path = located.root / "model_index.json"
        if not index_path.exists() and (located.root / CONFIG).exists():
            return self._validate_transformers(out, model_id, entry, located)
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
            known = sorted(c for s in FAMILIES.values() for c in s.pipeline_classes)
            out.errors.append(f"pipeline class {class_name} is not supported; supported "
                              f"classes: {known}")
            return out
        out.family = spec.name
        if spec.name not in config.enabled_families():
            out.errors.append(f"family {spec.name} is not deployed on this server; enable it "
                              "under families in the config")
        missing, pickled = _missing_weights(located.root, model_index)
        if pickled and not config.allow_pickle_weights:
            out.errors.append(f"components {pickled} have only pickle weights (.bin, .pt, "
                              ".ckpt), which this server does not load: convert them to "
                              "safetensors")
        if missing:
            where = ", ".join(located.looked)
            if located.hub and not hub_offline():
                out.warnings.append(f"weights of {missing} are not in the local cache; they "
                                    "will be downloaded from the Hub on first use")
            else:
                out.errors.append(f"weights of components {missing} were not found (looked "
                                  f"in: {where})")
        if entry is None:
            out.warnings.append("not in the built-in catalog: the family's default parameters "
                                "apply")
        licence = ((entry.license if entry else None)
                   or _read_license(located.root, model_id, located.hub))
        if licence is None:
            out.warnings.append("no licence found in the model card; import requires accepting "
                                "it")
        self._set_terms(out, model_id, spec.name, licence,
                        (entry.parameters if entry else None) or spec.parameters)
        out.source = ModelSource(base=located.source)
        out.supported = not out.errors
        return out

    def _validate_transformers(self, out: Validation, model_id: str, entry,
                               located: Located) -> Validation:
        """A transformers model served as a family of its own (an upscaler: Swin2SR): its
        config.json's architecture names the family, its weights are safetensors."""
        try:
            model_config = json.loads((located.root / CONFIG).read_text())
            class_name = str((model_config.get("architectures") or [None])[0])
        except (ValueError, AttributeError, TypeError) as exc:
            out.errors.append(f"{model_id}: {CONFIG} is not valid: {exc}")
            return out
        spec = family_for_pipeline(class_name)
        if spec is None or spec.load is None:
            out.errors.append(f"{model_id} has no model_index.json (not a diffusers pipeline) "
                              f"and its {CONFIG} names {class_name}, which no family here "
                              "serves")
            return out
        out.pipeline_class, out.family = class_name, spec.name
        if spec.name not in self.config.enabled_families():
            out.errors.append(f"family {spec.name} is not deployed on this server; enable it "
                              "under families in the config")
        names = [p.name for p in located.root.iterdir()]
        if not any(n.endswith(".safetensors") for n in names):
            if located.hub and not hub_offline():
                out.warnings.append("its weights are not in the local cache; they will be "
                                    "downloaded from the Hub on first use")
            else:
                out.errors.append(f"{model_id}: no safetensors weights beside its {CONFIG} "
                                  "(pickle weights are never loaded)")
        parameters = (entry.parameters if entry else None) or spec.parameters.model_copy(
            update={"upscale_factor": model_config.get("upscale", spec.parameters.upscale_factor)})
        licence = ((entry.license if entry else None)
                   or _read_license(located.root, model_id, located.hub))
        self._set_terms(out, model_id, spec.name, licence, parameters)
        out.source = ModelSource(base=located.source)
        out.supported = not out.errors
        return out

    def _validate_finetune(self, model_id: str, entry, validation_id: str) -> Validation:
        """A transformer fine-tune: the base pipeline must validate, and its weights be
        reachable."""
        out = self._validate_pipeline(entry.base_model, validation_id)
        out.hf_model_id = model_id
        # A fine-tune repo holds transformer weights only, no model_index.json: look for it.
        local = models_dir_path(model_id, self.config.models_path)
        if local is not None:
            weights, where = local / TRANSFORMER_FILE, "the models directory"
        else:
            weights, where = cached_file(model_id, TRANSFORMER_FILE)
        if weights is None or not weights.exists():
            if local is None and not hub_offline():
                out.warnings.append(f"{model_id}/{TRANSFORMER_FILE} is not cached; it will be "
                                    "downloaded on first use")
            else:
                out.errors.append(f"{model_id}: transformer weights {TRANSFORMER_FILE} not "
                                  f"found (looked in: {where})")
        self._set_terms(out, model_id, entry.family, entry.license,
                        entry.parameters or out.parameters)
        out.warnings = [w for w in out.warnings if "not in the built-in catalog" not in w]
        out.warnings.append(f"runs {model_id}'s transformer on the {entry.base_model} pipeline")
        out.supported = not out.errors and out.family is not None
        if out.source is not None:
            out.source = ModelSource(base=out.source.base, transformer=model_id)
        return out

    def _find_controlnet(self, model_id: str) -> FoundControlNet | None:
        """The ControlNet, when `model_id` names a ControlNet repository (a config.json of a
        ControlNet class, no model_index.json) rather than a pipeline or an adapter."""
        helper = TINY_HELPERS.get(model_id)
        if helper is not None and helper.kind == "controlnet":
            root = ensure_helper(self.config.data_dir, model_id)
            return FoundControlNet(ModelSource(base=model_id), helper.family, root=root)
        local = models_dir_path(model_id, self.config.models_path)
        if local is not None:
            if not is_controlnet_dir(local):
                return None
            return locate_controlnet(model_id, self.config.models_path, PARAM, local=True)
        if not REPO_ID_RE.match(model_id) or ".." in model_id:
            return None
        from huggingface_hub import constants, try_to_load_from_cache

        try:
            if isinstance(try_to_load_from_cache(model_id, "model_index.json"), str):
                return None
            cached = try_to_load_from_cache(model_id, CONFIG)
        except Exception:  # not a valid repo id: the pipeline path says so
            return None
        if isinstance(cached, str):
            return (locate_controlnet(model_id, self.config.models_path, PARAM)
                    if is_controlnet_dir(Path(cached).parent) else None)
        names = self._hub_files(model_id, constants.ENDPOINT)
        if names is None or CONFIG not in names or "model_index.json" in names:
            return None
        try:
            return locate_controlnet(model_id, self.config.models_path, PARAM)
        except TesseraError:
            return None  # a config.json of another kind of model: not a ControlNet

    @staticmethod
    def _hub_files(repo: str, endpoint: str) -> dict[str, int | None] | None:
        """The repository's files and their sizes on the Hub, when it may be asked."""
        if hub_offline() or hub_unreachable(endpoint):
            return None
        try:
            from huggingface_hub import HfApi

            info = HfApi().model_info(repo, files_metadata=True)
        except Exception:
            return None
        return {s.rfilename: s.size for s in info.siblings or []}

    def _validate_controlnet(self, model_id: str, found: FoundControlNet,
                             validation_id: str) -> Validation:
        """A ControlNet repository: its family (from its config), safetensors weights present
        (or on the Hub), its licence; imported, it is a tm_* ControlNet for `controlnets`."""
        config = self.config
        spec = FAMILIES[found.family]
        out = Validation(id=validation_id, hf_model_id=model_id, kind="controlnet",
                         family=found.family, pipeline_class=found.class_name,
                         source=found.source)
        if spec.name not in config.enabled_families():
            out.errors.append(f"family {spec.name} is not deployed on this server; enable it "
                              "under families in the config")
        files = ({p.name: p.stat().st_size for p in found.root.iterdir() if p.is_file()}
                 if found.root is not None else {})
        if found.hub and not any(n.endswith(".safetensors") for n in files):
            from huggingface_hub import constants

            files = self._hub_files(model_id, constants.ENDPOINT) or files
            if any(n.endswith(".safetensors") for n in files):
                out.warnings.append("its weights are not in the local cache; they will be "
                                    "downloaded from the Hub on first use")
        weights = {n: s for n, s in files.items() if n.endswith(".safetensors")}
        if weights:
            out.size = sum(s or 0 for s in weights.values())
        elif any(n.endswith(PICKLE_SUFFIXES) for n in files):
            out.errors.append(f"{model_id} has only pickle weights (.bin, .pt), which are never "
                              "loaded: convert them to safetensors")
        else:
            out.errors.append(f"{model_id}: no safetensors weights were found beside its "
                              f"{CONFIG}")
        entry = CONTROLNETS.get(model_id)
        licence = entry.license if entry else _read_license(found.root, model_id, found.hub)
        self._set_terms(out, model_id, spec.name, licence, spec.parameters)
        out.price_per_image = 0.0  # the model it conditions bills the images
        out.supported = not out.errors
        return out

    def _find_lora(self, model_id: str) -> AdapterFile | None:
        """The adapter, when `model_id` names a LoRA repository rather than a pipeline."""
        source = (AdapterSource.parse(model_id, PARAM) if HUB_ADAPTER_RE.match(model_id)
                  and ".." not in model_id else None)
        family = source.tiny_family if source is not None else None
        if family in FAMILIES:
            if ensure_tiny_lora(self.config.data_dir, family) is None:
                raise LoraUnreachableError(f"{PARAM}: the {family} family takes no LoRA "
                                           "adapters", param=PARAM)
            return self.adapters.read(source, PARAM)
        local = models_dir_path(model_id, self.config.models_path)
        if local is not None:
            names = {p.name for p in local.iterdir()}
            if "model_index.json" in names or not any(
                    n.endswith((".safetensors", *PICKLES)) for n in names):
                return None
            return self.adapters.read(AdapterSource(kind="local", name=str(local)), PARAM)
        if source is None or tiny_family(model_id) is not None:
            return None
        if source.file is not None:
            return self.adapters.read(source, PARAM)
        return self._hub_lora(source)

    def _hub_lora(self, source: AdapterSource) -> AdapterFile | None:
        from huggingface_hub import constants, try_to_load_from_cache

        repo = source.name
        try:
            if isinstance(try_to_load_from_cache(repo, "model_index.json"), str):
                return None
            cached_readme = try_to_load_from_cache(repo, "README.md")
        except Exception:  # not a valid repo id: the pipeline path says so
            return None
        if isinstance(cached_readme, str):
            names = {p.name for p in Path(cached_readme).parent.iterdir()}
            if "model_index.json" not in names and any(
                    f.endswith(".safetensors") for f in names):
                return self.adapters.read(source, PARAM)
            return None
        if hub_offline() or hub_unreachable(constants.ENDPOINT):
            return None
        try:
            from huggingface_hub import HfApi

            names = set(HfApi().list_repo_files(repo))
        except Exception:
            return None
        if "model_index.json" in names or not any(f.endswith(".safetensors") for f in names):
            return None
        return self.adapters.read(source, PARAM)

    def _validate_lora(self, model_id: str, adapter: AdapterFile, validation_id: str,
                       base_model: str | None, tenant_base: ModelRecord | None) -> Validation:
        """A LoRA repository: its adapter checked (safetensors only, caps, LoRA tensors), its
        base validated as a pipeline, and its keys and shapes checked against the base's
        modules."""
        out = Validation(id=validation_id, hf_model_id=model_id, kind="lora",
                         adapter=adapter.source)
        limits = self.config.loras
        try:
            info = files.inspect(adapter.data, param=PARAM, max_bytes=limits.max_bytes,
                                 max_tensors=limits.max_tensors, max_rank=limits.max_rank)
        except TesseraError as exc:
            out.errors.append(f"{model_id} has no model_index.json, so it is not a diffusers "
                              f"pipeline checkpoint, and it holds no usable LoRA adapter: "
                              f"{exc.message}")
            return out
        out.rank, out.target_modules = info.rank, info.target_modules
        out.size, out.sha256 = info.size, info.sha256
        base_id = (tenant_base.id if tenant_base else None) or base_model or (
            adapter.card_base_model)
        out.base_model = base_id
        if base_id is None:
            out.errors.append(f"{model_id}'s model card names no base_model: send base_model "
                              "(a tm_* id, a catalog name or a Hub id)")
            return out
        if tenant_base is not None:
            if tenant_base.kind != "pipeline":
                out.errors.append(f"base_model {base_id} is itself a LoRA")
                return out
            out.family, out.license = tenant_base.family, tenant_base.license
            out.price_per_image, out.currency = (tenant_base.price_per_image,
                                                 tenant_base.currency)
            out.parameters, out.source = tenant_base.parameters, tenant_base.source
        else:
            base = self.validate(base_id, validation_id)
            if base.kind == "lora":
                out.errors.append(f"base_model {base_id} is itself a LoRA")
                return out
            out.errors += [f"base model {base_id}: {e}" for e in base.errors]
            out.warnings += [f"base model {base_id}: {w}" for w in base.warnings]
            for name in ("family", "pipeline_class", "license", "requires_license_acceptance",
                         "price_per_image", "currency", "parameters", "source"):
                setattr(out, name, getattr(base, name))
        if out.family is None:
            if not out.errors:
                out.errors.append(f"base model {base_id} could not be resolved")
            return out
        spec = FAMILIES[out.family]
        if not spec.takes_loras:
            out.errors.append(f"{spec.display_name} models take no LoRA adapters")
        elif out.source is not None:
            self._check_fit(out, adapter.data, out.source)
        out.supported = not out.errors
        return out

    def _check_fit(self, out: Validation, data: bytes, source: ModelSource) -> None:
        """Keys and shapes against the base's modules, from the base checkpoint's weight
        headers where they are on this machine (kohya and xlabs names converted first, by the
        base pipeline's own loader); otherwise the replica checks at first use."""
        config = self.config
        shapes = base_shapes(source, config.data_dir, config.models_path)
        if not shapes:
            out.warnings.append("the adapter's fit to the base is checked when it is first "
                                "used (the base's weights are not on this machine)")
            return
        adapter = files.header_shapes(data)
        try:
            if not prefixed(adapter, set(shapes)):
                _, tensors = files.load(data, param=PARAM, max_bytes=len(data),
                                        max_tensors=config.loras.max_tensors,
                                        max_rank=config.loras.max_rank)
                pipeline = out.pipeline_class or next(iter(
                    FAMILIES[out.family].pipelines.values()))
                adapter = {k: list(v.shape) for k, v in converted_by(pipeline, tensors).items()}
        except TesseraError as exc:
            out.errors.append(exc.message)
            return
        problems = misfits(adapter, shapes)
        if problems:
            out.errors.append(f"the adapter does not fit {out.base_model}: "
                              + "; ".join(problems))

    def _set_terms(self, out: Validation, model_id: str, family: str, licence: str | None,
                   parameters) -> None:
        """Licence, price and parameter bounds: what an import agrees to."""
        terms = model_terms(model_id, family, licence, parameters, self.config)
        out.license = terms.license
        out.requires_license_acceptance = terms.requires_license_acceptance
        out.price_per_image, out.currency = terms.price_per_image, terms.currency
        out.parameters = terms.parameters
