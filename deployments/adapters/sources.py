"""The one resolver of LoRA adapters: an `AdapterSource` of any kind becomes an `AdapterFile`
(its bytes, where they were found, its repository's model card).

- `model`: a tenant's imported LoRA model: its record's own source (looked up by the caller's
  `lookup`, so another tenant's id is not found);
- `url`: fetched through the outbound guard, capped at `max_bytes`;
- `tiny`: the built-in `tessera/tiny-<family>-lora`, made once by `tiny_ready` where missing;
- `hub`: the Hugging Face cache first, then the Hub when it may be asked;
- `local`: a directory under the models directory (an imported model's).

A repository is `*.safetensors` and a README whose front matter names `base_model:`; with no
file named, its one adapter file (or diffusers' own file name) is taken. Pickle files are never
read. The blocking part (`read`) serves the model registry's validation as it is.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from deployments import tiny
from deployments.registry import takes_loras
from serve_app.core import netguard
from serve_app.core.errors import (
    ForbiddenURLError,
    ImageFetchError,
    LoraIncompatibleError,
    LoraInvalidError,
    LoraUnreachableError,
    LoraUnsupportedFormatError,
    PayloadTooLargeError,
)
from serve_app.core.hub import front_matter, hub_offline, hub_unreachable
from serve_app.core.models import TINY_LORA_SUFFIX, AdapterSource, ModelRecord
from serve_app.core.paths import models_dir_path

WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' own adapter file name
PICKLES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")


def tiny_lora_path(data_dir: str | Path, family: str) -> Path:
    """A family's built-in tiny LoRA repository, beside its tiny checkpoint."""
    return tiny.checkpoint_path(data_dir, f"{family}{TINY_LORA_SUFFIX}")


@dataclass(frozen=True)
class AdapterFile:
    """An adapter, found: its bytes (not yet checked: `files.inspect` does that), where they
    were found (a tenant's model: its own stored source), and its repository's card."""

    source: AdapterSource
    data: bytes
    card: str | None = None

    @property
    def card_base_model(self) -> str | None:
        base = front_matter(self.card or "").get("base_model")
        if isinstance(base, list):
            base = base[0] if base else None
        return str(base) if base else None


# a tenant's tm_* model by id (UnknownModelError for anyone else's), and a family's tiny
# adapter made where it is missing: what the resolver asks its owner for
Lookup = Callable[[str, str, str], Awaitable[ModelRecord]]
TinyReady = Callable[[str], Awaitable[None]]


class AdapterResolver:
    def __init__(self, data_dir: str, models_dir: Path, max_bytes: int, url_timeout_s: float,
                 allow_private_urls: bool, lookup: Lookup | None = None,
                 tiny_ready: TinyReady | None = None):
        self.data_dir = data_dir
        self.models_dir = models_dir
        self.max_bytes = max_bytes
        self.url_timeout_s = url_timeout_s
        self.allow_private_urls = allow_private_urls
        self.lookup = lookup
        self.tiny_ready = tiny_ready

    async def resolve(self, tenant: str, source: AdapterSource, param: str) -> AdapterFile:
        if source.kind == "model":
            record = await self.lookup(tenant, source.name, param)
            if record.kind != "lora" or record.adapter is None:
                raise LoraIncompatibleError(f"{param}: {source.name} is a model, not a LoRA",
                                            param=param)
            source = record.adapter
        if source.kind == "url":
            return AdapterFile(source, await self._fetch(source.name, param))
        family = source.tiny_family
        if family is not None and self.tiny_ready is not None and takes_loras(family) and not (
                tiny_lora_path(self.data_dir, family) / WEIGHTS).exists():
            await self.tiny_ready(family)
        return await asyncio.to_thread(self.read, source, param)

    async def _fetch(self, url: str, param: str) -> bytes:
        netguard.parse(url, param=param, error=LoraUnreachableError)
        try:
            return await netguard.fetch(url, param=param, max_bytes=self.max_bytes,
                                        timeout_s=self.url_timeout_s,
                                        allow_private=self.allow_private_urls,
                                        what="the adapter")
        except (ImageFetchError, ForbiddenURLError) as exc:
            raise LoraUnreachableError(exc.message, param=param) from None

    def read(self, source: AdapterSource, param: str) -> AdapterFile:
        """Blocking: a tiny, Hub or local adapter's file and card."""
        if source.file is not None:
            _refuse_pickle_name(source.file, param)
        if source.kind == "tiny":
            family = source.tiny_family
            if not takes_loras(family):
                raise LoraUnreachableError(f"{param}: no built-in tiny LoRA {source.name!r} (its "
                                           "family takes no LoRA adapters, or has none)",
                                           param=param)
            directory = tiny_lora_path(self.data_dir, family)
            if not (directory / WEIGHTS).exists():
                raise LoraUnreachableError(f"{param}: {source.name} has not been built on this "
                                           "server", param=param)
            return self._local(directory, source, param)
        if source.kind == "local":
            directory = models_dir_path(source.name, self.models_dir)
            if directory is None:
                raise LoraUnreachableError(f"{param}: the adapter is no longer in the models "
                                           "directory", param=param)
            return self._local(directory, source, param)
        if source.kind == "hub":
            return self._hub(source, param)
        raise LoraUnreachableError(f"{param}: {source} cannot be read here", param=param)

    def _local(self, directory: Path, source: AdapterSource, param: str) -> AdapterFile:
        names = sorted(p.name for p in directory.iterdir() if p.is_file())
        chosen = source.file or pick_file(names, str(source), param)
        path = (directory / chosen).resolve()
        if not path.is_relative_to(directory.resolve()) or not path.is_file():
            raise LoraUnreachableError(f"{param}: {source} has no file {chosen}", param=param)
        _refuse_pickle_name(chosen, param)
        card = directory / "README.md"
        return AdapterFile(source, self._read_file(path, param),
                           card.read_text(errors="replace") if card.exists() else None)

    def _hub(self, source: AdapterSource, param: str) -> AdapterFile:
        """From the local cache, or downloaded when the Hub may be asked."""
        from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

        repo = source.name
        cached_card = try_to_load_from_cache(repo, "README.md")
        chosen = source.file or _cached_choice(repo, param)
        if chosen is not None:
            cached = try_to_load_from_cache(repo, chosen)
            if isinstance(cached, str):
                card = Path(cached_card).read_text(errors="replace") if isinstance(
                    cached_card, str) else None
                return AdapterFile(source, self._read_file(Path(cached), param), card)
        if hub_offline():
            raise LoraUnreachableError(f"{param}: {repo} is not in the Hugging Face cache and "
                                       "HF_HUB_OFFLINE is set", param=param)
        unreachable = hub_unreachable(constants.ENDPOINT)
        if unreachable:
            raise LoraUnreachableError(f"{param}: {repo} is not in the Hugging Face cache and "
                                       f"the Hub could not be reached ({unreachable})",
                                       param=param)
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
        return AdapterFile(source, self._read_file(Path(path), param), card)

    def _read_file(self, path: Path, param: str) -> bytes:
        size = path.stat().st_size
        if size > self.max_bytes:
            raise PayloadTooLargeError(f"{param}: the adapter is {size} bytes; the limit is "
                                       f"{self.max_bytes}", param=param)
        return path.read_bytes()


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


def _cached_choice(repo: str, param: str) -> str | None:
    """The adapter file of a repository in the cache, by the cached snapshot's files."""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo, WEIGHTS), str):
        return WEIGHTS
    readme = try_to_load_from_cache(repo, "README.md")
    if isinstance(readme, str):
        return pick_file([p.name for p in Path(readme).parent.iterdir()], repo, param)
    return None


def _refuse_pickle_name(name: str, param: str) -> None:
    if name.endswith(PICKLES):
        raise LoraUnsupportedFormatError(
            f"{param}: {name} is a pickle format (.bin, .ckpt, .pt), which is never loaded; "
            "convert the adapter to safetensors", param=param)
