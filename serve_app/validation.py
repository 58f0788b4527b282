"""`validate-hf`: find a checkpoint, read its model_index.json, decide whether Tessera serves it.

An id is one of: a built-in `tessera/tiny-<family>`, a local directory holding a diffusers
checkpoint, or a Hugging Face repo id (looked up in the local HF cache, and on the Hub unless
`HF_HUB_OFFLINE` is set). Everything here is blocking file and network I/O: callers run it in a
thread.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from deployments.base import FamilySpec
from deployments.registry import FAMILIES, family_for_pipeline
from serve_app.catalog import CATALOG, TINY_PREFIX, price_per_image, requires_acceptance
from serve_app.protocol import Pricing, ValidateResponse

logger = logging.getLogger("tessera.validation")

REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json",
                   ".gguf", ".pt", ".ckpt")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def tiny_checkpoint_path(data_dir: str | Path, family: str) -> Path:
    return Path(data_dir) / "tiny" / family


def explain_build_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    try:
        from transformers.utils import is_torchvision_available
    except ImportError:
        return text
    if not is_torchvision_available() and ("VIDEO_PROCESSOR" in text or "orchvision" in text):
        return ("its Qwen2VLProcessor needs torchvision, which is not installed "
                f"(transformers builds that processor only with it): {text}")
    return text


def ensure_tiny_checkpoint(data_dir: str | Path, spec: FamilySpec) -> Path:
    """Write the family's tiny checkpoint once; later calls return the existing one.

    Built in a temporary directory and renamed into place, so a replica that races another
    (or is killed half-way) never leaves a half-written checkpoint behind.
    """
    path = tiny_checkpoint_path(data_dir, spec.name)
    if (path / "model_index.json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=path.parent))
    try:
        spec.build_tiny(str(tmp))
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / "model_index.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("built tiny %s checkpoint at %s", spec.name, path)
    return path


TRANSFORMER_FILE = "diffusion_pytorch_model.safetensors"
OVERRIDE_SEP = "|transformer="


def resolve_source(source: str, data_dir: str | Path) -> tuple[str, str | None]:
    """(what `from_pretrained` receives, a transformer weights file to load over it or None).

    A source is a tiny id, a directory, or a repo id, optionally followed by
    `|transformer=<repo id or directory>` for fine-tunes shipped as transformer weights alone.
    """
    source, _, transformer = source.partition(OVERRIDE_SEP)
    if source.startswith(TINY_PREFIX):
        source = str(ensure_tiny_checkpoint(data_dir, FAMILIES[source[len(TINY_PREFIX):]]))
    if not transformer:
        return source, None
    if Path(transformer).is_dir():
        return source, str(Path(transformer) / TRANSFORMER_FILE)
    from huggingface_hub import hf_hub_download

    return source, hf_hub_download(transformer, TRANSFORMER_FILE)


@dataclass
class Located:
    source: str | None = None  # what the family deployment loads
    root: Path | None = None  # a local directory holding model_index.json
    hub: bool = False
    looked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def locate(model_id: str, data_dir: str | Path) -> Located:
    if model_id.startswith(TINY_PREFIX):
        spec = FAMILIES.get(model_id[len(TINY_PREFIX):])
        if spec is None or spec.build_tiny is None:
            known = sorted(e for e in CATALOG if e.startswith(TINY_PREFIX))
            return Located(errors=[f"no built-in tiny checkpoint {model_id!r}; known: {known}"])
        try:
            root = ensure_tiny_checkpoint(data_dir, spec)
        except Exception as exc:  # e.g. a component whose library needs a missing package
            return Located(looked=["built-in tiny checkpoints"], errors=[
                f"the tiny {spec.name} checkpoint could not be built here: "
                f"{explain_build_error(exc)}"])
        return Located(source=model_id, root=root, looked=["built-in tiny checkpoints"])
    path = _local_dir(model_id)
    if path is not None:
        return Located(source=str(path), root=path, looked=[f"local directory {path}"])
    if model_id.startswith(("/", ".", "~")) or not REPO_ID_RE.match(model_id):
        return Located(looked=[f"local directory {model_id}"],
                       errors=[f"{model_id!r} is neither a local directory nor a Hugging Face "
                               "repo id of the form owner/name"])
    return _locate_on_hub(model_id)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):  # a name too long for the filesystem, a NUL byte: not a dir
        return False


def _local_dir(model_id: str) -> Path | None:
    """The directory `model_id` names, resolved, or None."""
    try:
        path = Path(model_id).expanduser()
    except RuntimeError:  # "~<unknown user>...": no home directory to expand
        return None
    return path.resolve() if _is_dir(path) else None


HUB_PROBE_TIMEOUT_S = 2.0
HUB_PROBE_TTL_S = 30.0
_hub_probes: dict[str, tuple[float, str | None]] = {}


def hub_unreachable(endpoint: str) -> str | None:
    """Why the Hub cannot be reached (None: its host accepts connections), cached briefly.

    huggingface_hub retries a failed connection five times with backoff (23 s measured with no
    network); one quick TCP probe first lets validation answer at once instead.
    """
    now = time.monotonic()
    cached = _hub_probes.get(endpoint)
    if cached is not None and now - cached[0] < HUB_PROBE_TTL_S:
        return cached[1]
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)

    def probe() -> None:
        socket.create_connection((parts.hostname, port), timeout=HUB_PROBE_TIMEOUT_S).close()

    # in a thread: name resolution is not bounded by the socket timeout
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        pool.submit(probe).result(timeout=HUB_PROBE_TIMEOUT_S + 0.5)
        reason = None
    except concurrent.futures.TimeoutError:
        reason = f"no answer from {parts.hostname}:{port} within {HUB_PROBE_TIMEOUT_S:g} s"
    except OSError as exc:
        reason = f"{type(exc).__name__}: {exc}"
    finally:
        pool.shutdown(wait=False)
    _hub_probes[endpoint] = (now, reason)
    return reason


def _locate_on_hub(repo_id: str) -> Located:
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import (
        HFValidationError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
    )

    cache = constants.HF_HUB_CACHE
    found = Located(source=repo_id, hub=True, looked=[f"Hugging Face cache {cache}"])
    try:
        cached = try_to_load_from_cache(repo_id, "model_index.json")
    except HFValidationError as exc:  # e.g. "a--b/c", "a/b..c": shapes the Hub forbids
        found.errors.append(f"{repo_id!r} is not a valid Hugging Face repo id: {exc}")
        return found
    if isinstance(cached, str):
        found.root = Path(cached).parent
        return found
    not_cached = f"{repo_id}: model_index.json is not in the Hugging Face cache at {cache}"
    if hub_offline():
        found.looked.append("the Hugging Face Hub (skipped: HF_HUB_OFFLINE is set)")
        found.errors.append(f"{not_cached} and HF_HUB_OFFLINE is set, so the Hub was not "
                            "asked: the weights could not be reached")
        return found
    found.looked.append(f"the Hugging Face Hub at {constants.ENDPOINT}")
    unreachable = hub_unreachable(constants.ENDPOINT)
    if unreachable:
        found.errors.append(f"{not_cached}, and the Hub at {constants.ENDPOINT} could not be "
                            f"reached ({unreachable}): the weights could not be reached. "
                            "Put the model in the cache, or point HF_ENDPOINT at a mirror.")
        return found
    try:
        found.root = Path(hf_hub_download(repo_id, "model_index.json", etag_timeout=5)).parent
    except RemoteEntryNotFoundError:
        found.errors.append(f"{repo_id} has no model_index.json on the Hub: it is not a "
                            "diffusers pipeline checkpoint")
    except RepositoryNotFoundError:
        found.errors.append(f"{repo_id}: no such repository on the Hub at {constants.ENDPOINT} "
                            "(or it is private or gated: set HF_TOKEN)")
    except Exception as exc:  # LocalEntryNotFoundError (connection lost), timeouts, 5xx
        found.errors.append(f"{not_cached}, and the Hub at {constants.ENDPOINT} answered "
                            f"{type(exc).__name__}: {str(exc)[:200]}: the weights could not "
                            "be reached")
    return found


def _missing_weights(root: Path, model_index: dict) -> list[str]:
    missing = []
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
        if not any(p.name.endswith(WEIGHT_SUFFIXES) for p in folder.iterdir()):
            missing.append(name)
    return missing


def _read_license(root: Path | None, repo_id: str, hub: bool) -> str | None:
    text = None
    if root is not None and (root / "README.md").exists():
        text = (root / "README.md").read_text(errors="replace")
    elif hub and not hub_offline():
        from huggingface_hub import constants

        if hub_unreachable(constants.ENDPOINT):
            return None
        try:
            from huggingface_hub import hf_hub_download

            text = Path(hf_hub_download(repo_id, "README.md")).read_text(errors="replace")
        except Exception:
            return None
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
    entry = CATALOG.get(model_id)
    if entry is not None and entry.unsupported_reason:
        return ValidateResponse(validation_id=validation_id, hf_model_id=model_id,
                                supported=False, errors=[entry.unsupported_reason],
                                license=entry.license)
    if entry is not None and entry.base_model:
        return _validate_finetune(model_id, entry, config, validation_id)
    located = locate(model_id, config.data_dir)
    out = ValidateResponse(validation_id=validation_id, hf_model_id=model_id, supported=False,
                           errors=list(located.errors), warnings=list(located.warnings))
    if located.errors or located.root is None:
        if not out.errors:
            out.errors.append(f"{model_id}: not found (looked in: {', '.join(located.looked)})")
        return out
    index_path = located.root / "model_index.json"
    if not index_path.exists():
        out.errors.append(f"{model_id} has no model_index.json (looked in "
                          f"{located.root}): it is not a diffusers pipeline checkpoint")
        return out
    try:
        model_index = json.loads(index_path.read_text())
        class_name = str(model_index["_class_name"])
    except (ValueError, KeyError, TypeError) as exc:
        out.errors.append(f"{index_path} is not a valid model_index.json: {exc}")
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
    missing = _missing_weights(located.root, model_index)
    if missing:
        where = ", ".join(located.looked)
        if located.hub and not hub_offline():
            out.warnings.append(f"weights of {missing} are not in the local cache; they will be "
                                "downloaded from the Hub on first use")
        else:
            out.errors.append(f"weights of components {missing} were not found (looked in: "
                              f"{where}; checkpoint root {located.root})")
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
    out.license = licence
    out.requires_license_acceptance = requires_acceptance(licence)
    out.pricing = Pricing(per_image=price_per_image(model_id, family, config.pricing),
                          currency=config.pricing.currency)
    out.parameters = parameters


def _validate_finetune(model_id: str, entry, config, validation_id: str) -> ValidateResponse:
    """A transformer fine-tune: the base pipeline must validate, and its weights be reachable."""
    out = validate(entry.base_model, config, validation_id)
    out.hf_model_id = model_id
    # A fine-tune repo holds transformer weights only, no model_index.json: look for the file.
    if _is_dir(Path(model_id)):
        weights, where = Path(model_id) / TRANSFORMER_FILE, f"local directory {model_id}"
    else:
        from huggingface_hub import constants, try_to_load_from_cache

        cached = try_to_load_from_cache(model_id, TRANSFORMER_FILE)
        weights = Path(cached) if isinstance(cached, str) else None
        where = f"Hugging Face cache {constants.HF_HUB_CACHE}"
    if weights is None or not weights.exists():
        if not _is_dir(Path(model_id)) and not hub_offline():
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
