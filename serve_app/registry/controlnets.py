"""ControlNets as the registry knows them: the catalog of well-known ones, and where a named
ControlNet is and which family it serves.

A ControlNet is named by a built-in tiny id (`tessera/tiny-<family>-controlnet`), a catalog id,
a Hugging Face repo id, or (validation only: a tenant's import) a directory under the models
directory. Its family comes from its `config.json` (`_class_name`, `deployments.registry`), read
from the Hugging Face cache, or fetched (that one small file) when the Hub may be asked. Nothing
here imports torch or diffusers: the ingress resolves a request's ControlNets with it, in a
thread (the cache is on disk, the Hub is the network).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from deployments.helpers import TINY_HELPERS
from deployments.registry import FAMILIES, family_for_controlnet
from serve_app.core.errors import ControlNetUnreachableError
from serve_app.core.hub import cached_file, hub_offline, hub_unreachable
from serve_app.core.models import REPO_ID_RE
from serve_app.core.paths import models_dir_path
from serve_app.core.types import ModelSource

CONFIG = "config.json"
NC_FLUX1 = "flux-1-dev-non-commercial-license"
# Shakker-Labs' and InstantX's FLUX union ControlNets: control_mode by what the image shows
FLUX_UNION_MODES = {"canny": 0, "tile": 1, "depth": 2, "blur": 3, "pose": 4, "gray": 5,
                    "low_quality": 6}


@dataclass(frozen=True)
class ControlNetEntry:
    id: str
    family: str
    license: str
    description: str
    modes: dict[str, int] = field(default_factory=dict)  # a union ControlNet's control_mode


CONTROLNETS: dict[str, ControlNetEntry] = {e.id: e for e in [
    ControlNetEntry("InstantX/FLUX.1-dev-Controlnet-Canny", "flux", NC_FLUX1,
                    "FLUX.1 [dev] canny edges"),
    ControlNetEntry("Shakker-Labs/FLUX.1-dev-ControlNet-Depth", "flux", NC_FLUX1,
                    "FLUX.1 [dev] depth"),
    ControlNetEntry("Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro", "flux", NC_FLUX1,
                    "FLUX.1 [dev] union: one ControlNet, the kind of image set by control_mode",
                    FLUX_UNION_MODES),
    ControlNetEntry("InstantX/FLUX.1-dev-Controlnet-Union", "flux", NC_FLUX1,
                    "FLUX.1 [dev] union (InstantX)", FLUX_UNION_MODES),
    ControlNetEntry("xinsir/controlnet-canny-sdxl-1.0", "sdxl", "apache-2.0",
                    "SDXL canny edges"),
    ControlNetEntry("diffusers/controlnet-canny-sdxl-1.0", "sdxl", "openrail++",
                    "SDXL canny edges (diffusers)"),
    ControlNetEntry("diffusers/controlnet-depth-sdxl-1.0", "sdxl", "openrail++",
                    "SDXL depth (diffusers)"),
    ControlNetEntry("stabilityai/stable-diffusion-3.5-large-controlnet-depth", "sd3",
                    "stabilityai-ai-community", "SD 3.5 Large depth"),
    ControlNetEntry("stabilityai/stable-diffusion-3.5-large-controlnet-blur", "sd3",
                    "stabilityai-ai-community", "SD 3.5 Large blur (tile upscaling)"),
    ControlNetEntry("InstantX/Qwen-Image-ControlNet-Union", "qwen-image", "apache-2.0",
                    "Qwen-Image union: canny, soft edge, depth, pose"),
]}
# the built-in tiny ones, for tests and demos on the tiny models
for _name, _helper in TINY_HELPERS.items():
    if _helper.kind == "controlnet":
        CONTROLNETS[_name] = ControlNetEntry(_name, _helper.family, "apache-2.0",
                                             f"tiny random-weight {_helper.family} ControlNet")


@dataclass(frozen=True)
class FoundControlNet:
    """A ControlNet, found: what the family server loads, the family it serves, its class, and
    (where it is on this machine) its directory."""

    source: ModelSource
    family: str
    class_name: str | None = None
    root: Path | None = None
    hub: bool = False
    modes: int | None = None  # a union ControlNet's number of control modes (None: not one)
    config: dict = field(default_factory=dict, compare=False)  # its config.json (tiny: none)

    @property
    def tiny(self) -> bool:
        return self.source.base in TINY_HELPERS


def locate_controlnet(name: str, models_dir: Path, param: str,
                      local: bool = False) -> FoundControlNet:
    """Where the ControlNet `name` is and which family it serves (blocking). `local`: a
    directory under the models directory may be named (validation; never a request)."""
    entry = CONTROLNETS.get(name)
    if entry is not None and entry.id in TINY_HELPERS:
        return FoundControlNet(ModelSource(base=name), entry.family)
    path = models_dir_path(name, models_dir) if local else None
    if path is not None:
        return _from_config(name, path / CONFIG, ModelSource(base=str(path)), param, root=path)
    if not REPO_ID_RE.match(name) or ".." in name:
        raise ControlNetUnreachableError(
            f"{param}: {name!r} is not a ControlNet this server can reach: give a tm_* "
            "ControlNet you imported, a catalog ControlNet or a Hugging Face repo id "
            "(owner/name)", param=param)
    cached, _ = cached_file(name, CONFIG)
    if cached is None:
        cached = _fetch_config(name, param)
    return _from_config(name, cached, ModelSource(base=name), param, root=cached.parent,
                        hub=True)


def _fetch_config(repo: str, param: str) -> Path:
    from huggingface_hub import constants, hf_hub_download

    unreachable = (f"{param}: {repo}'s {CONFIG} is not in the Hugging Face cache and "
                   "HF_HUB_OFFLINE is set" if hub_offline() else None)
    if unreachable is None:
        reason = hub_unreachable(constants.ENDPOINT)
        if reason:
            unreachable = (f"{param}: {repo}'s {CONFIG} is not in the Hugging Face cache and "
                           f"the Hub cannot be reached ({reason})")
    if unreachable:
        raise ControlNetUnreachableError(unreachable, param=param)
    try:
        return Path(hf_hub_download(repo, CONFIG, etag_timeout=5))
    except Exception as exc:  # no such repository or file, a gated repo, the network
        raise ControlNetUnreachableError(
            f"{param}: {repo} has no {CONFIG} the Hub would give ({type(exc).__name__}): it "
            "is not a diffusers ControlNet repository", param=param) from None


def _from_config(name: str, config_path: Path, source: ModelSource, param: str,
                 root: Path | None = None, hub: bool = False) -> FoundControlNet:
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError):
        raise ControlNetUnreachableError(f"{param}: {name} has no readable {CONFIG}: it is not "
                                         "a diffusers ControlNet", param=param) from None
    spec = family_for_controlnet(config) if isinstance(config, dict) else None
    if spec is None:
        known = sorted({c for s in FAMILIES.values() if s.controlnet
                        for c in s.controlnet.model_classes})
        found = config.get("_class_name") if isinstance(config, dict) else None
        raise ControlNetUnreachableError(
            f"{param}: {name} is not a ControlNet Tessera runs (its class is {found!r}; "
            f"ControlNet classes: {known})", param=param)
    modes = config.get("num_mode")
    return FoundControlNet(source, spec.name, config.get("_class_name"), root, hub,
                           modes if isinstance(modes, int) and modes > 0 else None, config)


def misfit(found: FoundControlNet, model: ModelSource, data_dir: str, models_dir: Path,
           keys: tuple[str, ...]) -> list[str]:
    """Where the ControlNet's widths differ from the model's denoiser's (blocking: reads the
    model's config where its checkpoint is on this machine; [] when either is not)."""
    from deployments.adapters.fit import base_root

    root = base_root(model, data_dir, models_dir)
    if root is None or not found.config:
        return []
    for folder in ("transformer", "unet"):
        try:
            denoiser = json.loads((root / folder / CONFIG).read_text())
            break
        except (OSError, ValueError):
            continue
    else:
        return []
    return [f"{k} {found.config[k]} (the model's: {denoiser[k]})" for k in keys
            if k in found.config and k in denoiser and found.config[k] != denoiser[k]]


def is_controlnet_dir(path: Path) -> bool:
    """A directory holding a ControlNet's config.json (and no pipeline's model_index.json)."""
    try:
        config = json.loads((path / CONFIG).read_text())
    except (OSError, ValueError):
        return False
    return (not (path / "model_index.json").exists() and isinstance(config, dict)
            and family_for_controlnet(config) is not None)
