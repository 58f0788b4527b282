"""LoRA repositories: where an adapter named by a Hub id, a built-in tiny id or a directory under
the models directory is, and what its model card says its base is.

A LoRA repository, as the Hub holds one, is a `*.safetensors` adapter and a README whose front
matter names `base_model:`; it has no `model_index.json` (that makes a pipeline checkpoint). An
adapter is named `owner/name` (its one adapter file) or `owner/name/file.safetensors`.
Everything here is blocking file and network I/O: callers run it in a thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from deployments.adapters import checkpoint_shapes
from deployments.loading import OVERRIDE_SEP, tiny_checkpoint_path
from deployments.registry import FAMILIES, TINY_PREFIX
from deployments.tiny_lora import WEIGHTS, ensure_tiny_lora, tiny_lora_family
from serve_app.core.errors import (
    LoraInvalidError,
    LoraUnreachableError,
    LoraUnsupportedFormatError,
    PayloadTooLargeError,
)
from serve_app.core.paths import models_dir_path
from serve_app.hub import front_matter, hub_offline, hub_unreachable

NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
HUB_ADAPTER_RE = re.compile(rf"^(?P<repo>{NAME}/{NAME})(?:/(?P<file>[A-Za-z0-9_./-]+))?$")
PICKLES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")


@dataclass
class FoundAdapter:
    location: str  # what an imported model keeps, to find the file again: an id or a path
    file: Path  # the adapter here
    card: str | None = None  # the repository's README, if any

    @property
    def card_base_model(self) -> str | None:
        base = front_matter(self.card or "").get("base_model")
        if isinstance(base, list):
            base = base[0] if base else None
        return str(base) if base else None


def pick_file(files: list[str], name: str, param: str) -> str:
    """The repository's adapter: the one safetensors file, or diffusers' own file name."""
    adapters = [f for f in files if f.endswith(".safetensors")]
    if WEIGHTS in adapters:
        return WEIGHTS
    if len(adapters) == 1:
        return adapters[0]
    if not adapters:
        if any(f.endswith(PICKLES) for f in files):
            raise LoraUnsupportedFormatError(
                f"{param}: {name} holds only pickled weights (.bin, .ckpt, .pt), which are never "
                "loaded; convert the adapter to safetensors", param=param)
        raise LoraInvalidError(f"{param}: {name} holds no .safetensors adapter", param=param)
    raise LoraInvalidError(f"{param}: {name} holds several .safetensors files "
                           f"({', '.join(sorted(adapters)[:5])}): name one as {name}/<file>",
                           param=param)


def find_local(directory: Path, location: str, file: str | None, param: str) -> FoundAdapter:
    """An adapter in a directory under the models directory (or a tiny LoRA's)."""
    names = sorted(p.name for p in directory.iterdir() if p.is_file())
    chosen = file or pick_file(names, location, param)
    path = (directory / chosen).resolve()
    if not path.is_relative_to(directory.resolve()) or not path.is_file():
        raise LoraUnreachableError(f"{param}: {location} has no file {chosen}", param=param)
    _refuse_pickle_name(chosen, param)
    card = directory / "README.md"
    return FoundAdapter(location=f"{location}/{file}" if file else location, file=path,
                        card=card.read_text(errors="replace") if card.exists() else None)


def find_hub(repo: str, file: str | None, param: str) -> FoundAdapter:
    """A Hub adapter: from the local cache, or downloaded when the Hub may be asked."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    if file is not None:
        _refuse_pickle_name(file, param)
    cached_card = try_to_load_from_cache(repo, "README.md")
    chosen = file or _cached_choice(repo, param)
    if chosen is not None:
        cached = try_to_load_from_cache(repo, chosen)
        if isinstance(cached, str):
            card = Path(cached_card).read_text(errors="replace") if isinstance(
                cached_card, str) else None
            return FoundAdapter(f"{repo}/{chosen}" if file else repo, Path(cached), card)
    if hub_offline():
        raise LoraUnreachableError(f"{param}: {repo} is not in the Hugging Face cache and "
                                   "HF_HUB_OFFLINE is set", param=param)
    unreachable = hub_unreachable(constants.ENDPOINT)
    if unreachable:
        raise LoraUnreachableError(f"{param}: {repo} is not in the Hugging Face cache and the "
                                   f"Hub could not be reached ({unreachable})", param=param)
    try:
        if chosen is None:
            from huggingface_hub import HfApi

            chosen = pick_file(HfApi().list_repo_files(repo), repo, param)
        path = hf_hub_download(repo, chosen, etag_timeout=10)
    except (LoraInvalidError, LoraUnsupportedFormatError):
        raise
    except Exception as exc:
        raise LoraUnreachableError(f"{param}: {repo} could not be fetched from the Hub: "
                                   f"{type(exc).__name__}: {str(exc)[:200]}",
                                   param=param) from None
    try:
        card = Path(hf_hub_download(repo, "README.md", etag_timeout=10)).read_text(
            errors="replace")
    except Exception:
        card = None
    return FoundAdapter(f"{repo}/{chosen}" if file else repo, Path(path), card)


def _cached_choice(repo: str, param: str) -> str | None:
    """The adapter file of a repository in the cache, by the cached snapshot's files."""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo, WEIGHTS), str):
        return WEIGHTS
    readme = try_to_load_from_cache(repo, "README.md")
    if isinstance(readme, str):
        return pick_file([p.name for p in Path(readme).parent.iterdir()], repo, param)
    return None


def find(path: str, data_dir: str, models_dir: Path, param: str,
         local: bool = False) -> FoundAdapter:
    """The adapter `path` names: a built-in tiny LoRA, a Hub adapter, or (`local`: an imported
    model's own location) a directory or file under the models directory."""
    parts = path.split("/")
    tiny = tiny_lora_family("/".join(parts[:2])) if len(parts) >= 2 else None
    if tiny is not None:
        directory = ensure_tiny_lora(data_dir, tiny)
        if directory is None:
            raise LoraUnreachableError(f"{param}: the {tiny} family takes no LoRA adapters",
                                       param=param)
        return find_local(directory, "/".join(parts[:2]), "/".join(parts[2:]) or None, param)
    if local and path.startswith("/"):
        target = Path(path)
        directory = models_dir_path(str(target if target.is_dir() else target.parent),
                                    models_dir)
        if directory is None:
            raise LoraUnreachableError(f"{param}: the adapter is no longer in the models "
                                       "directory", param=param)
        return find_local(directory, str(directory), None if target.is_dir() else target.name,
                          param)
    found = HUB_ADAPTER_RE.match(path)
    if found is None or ".." in path:
        raise LoraUnreachableError(
            f"{param}: {path!r} is not a LoRA this server can reach: give a tm_* LoRA model "
            "you imported, a Hugging Face repo id (owner/name or owner/name/file.safetensors) "
            "or an http(s) URL of a .safetensors file", param=param)
    return find_hub(found["repo"], found["file"], param)


def read(found: FoundAdapter, max_bytes: int, param: str) -> bytes:
    size = found.file.stat().st_size
    if size > max_bytes:
        raise PayloadTooLargeError(f"{param}: the adapter is {size} bytes; the limit is "
                                   f"{max_bytes}", param=param)
    return found.file.read_bytes()


def base_root(source: str, data_dir: str, models_dir: Path) -> Path | None:
    """The directory of the checkpoint a model source loads, when it is on this machine (the
    tiny checkpoints, the models directory, the Hugging Face cache): its weights' headers say
    every module's shape, so an adapter is checked against it without loading it."""
    from huggingface_hub import try_to_load_from_cache

    source = source.partition(OVERRIDE_SEP)[0]
    if source.startswith(TINY_PREFIX):
        family = source[len(TINY_PREFIX):]
        path = tiny_checkpoint_path(data_dir, family) if family in FAMILIES else None
        return path if path is not None and (path / "model_index.json").exists() else None
    if source.startswith("/"):
        path = Path(source)
        return path if path.is_relative_to(models_dir) and path.is_dir() else None
    try:
        cached = try_to_load_from_cache(source, "model_index.json")
    except Exception:
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def base_shapes(source: str, data_dir: str, models_dir: Path) -> dict:
    """Component -> parameter -> shape of the base a model source loads, from its weight
    headers; {} when its weights are not on this machine."""
    root = base_root(source, data_dir, models_dir)
    return checkpoint_shapes(root) if root is not None else {}


def _refuse_pickle_name(name: str, param: str) -> None:
    if name.endswith(PICKLES):
        raise LoraUnsupportedFormatError(
            f"{param}: {name} is a pickle format (.bin, .ckpt, .pt), which is never loaded; "
            "convert the adapter to safetensors", param=param)
