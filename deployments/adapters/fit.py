"""Whether an adapter fits a base: every key must land on a module of the base with matching
shapes (diffusers only warns about a key that matches nothing, and a wrong shape fails deep in
a load). Pure functions over shapes, read from safetensors headers alone, so the ingress checks
an adapter before its 202 without torch and without loading the base."""

from __future__ import annotations

import re
import struct
from pathlib import Path

from deployments import tiny
from deployments.adapters.files import MAX_HEADER_BYTES, header_shapes
from serve_app.core.errors import TesseraError
from serve_app.core.types import ModelSource

# a LoRA matrix in diffusers' (peft's) naming, after the loader's own format conversion:
# <component>.<module path>.<lora_A|lora_B>[.<adapter name>].weight
LORA_KEY = re.compile(r"^(?P<module>.+?)\.(?P<kind>lora_A|lora_B|lora_down|lora_up|lora\.down|"
                      r"lora\.up)(?:\.[^.]+)?\.weight$")
# DoRA's per-module magnitudes: one vector of the module's output size
MAGNITUDE_KEY = re.compile(r"^(?P<module>.+?)\.lora_magnitude_vector(?:\.[^.]+)?(?:\.weight)?$")
# the components diffusers' LoRA loaders prefix keys with, in every pipeline that takes LoRAs
DENOISERS_AND_ENCODERS = frozenset({"transformer", "unet", "text_encoder", "text_encoder_2",
                                    "text_encoder_3"})

Shapes = dict[str, dict[str, list[int]]]  # component -> parameter -> shape


def misfits(adapter: dict[str, list[int]], base: Shapes, limit: int = 5) -> list[str]:
    """Why the adapter (key -> shape, diffusers naming) does not fit the base; empty when it
    fits."""
    problems = []
    for key, shape in sorted(adapter.items()):
        component, _, rest = key.partition(".")
        params = base.get(component)
        found = LORA_KEY.match(rest)
        if params is None:
            problems.append(f"{key}: the base has no component {component!r}")
        elif found is None:
            magnitude = MAGNITUDE_KEY.match(rest)
            if key.endswith(".alpha"):
                continue
            if magnitude is not None:
                weight = params.get(magnitude["module"] + ".weight")
                if weight is None or list(shape) != weight[:1]:
                    problems.append(f"{key}: no module of the base with that output size")
                continue
            if params.get(rest) != list(shape):  # a full tensor (a norm) replacing the base's
                problems.append(f"{key}: no parameter of that name and shape in the base")
        else:
            weight = params.get(found["module"] + ".weight")
            down = found["kind"] in ("lora_A", "lora_down", "lora.down")
            if weight is None:
                problems.append(f"{key}: the base has no module {found['module']!r}")
            elif len(shape) < 2 or (down and shape[1] != weight[1]) or (
                    not down and shape[0] != weight[0]):
                problems.append(f"{key}: shape {list(shape)} does not fit the base's "
                                f"{list(weight)}")
        if len(problems) >= limit:
            break
    return problems


def prefixed(adapter: dict[str, list[int]], components: set[str]) -> bool:
    """Whether the keys already name components (diffusers' own format), so they can be checked
    without diffusers converting them (kohya and xlabs names need the loader). A component the
    base lacks then shows as a misfit: an SDXL adapter's `unet.` on FLUX."""
    known = components | DENOISERS_AND_ENCODERS
    return bool(adapter) and all(k.partition(".")[0] in known for k in adapter)


def checkpoint_shapes(root: Path) -> Shapes:
    """Every component's parameter shapes of a diffusers checkpoint on disk, read from the
    safetensors headers alone (a FLUX transformer's 24 GB cost a few hundred KB here)."""
    shapes: Shapes = {}
    for component in sorted(p for p in root.iterdir() if p.is_dir()):
        params: dict[str, list[int]] = {}
        for file in sorted(component.glob("*.safetensors")):
            with open(file, "rb") as f:
                prefix = f.read(8)
                length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else 0
                prefix += f.read(min(length, MAX_HEADER_BYTES))
            try:  # the same header parser as adapters'; an unreadable file tells nothing
                params.update(header_shapes(prefix))
            except TesseraError:
                continue
        if params:
            shapes[component.name] = params
    return shapes


def base_root(source: ModelSource, data_dir: str | Path, models_dir: Path) -> Path | None:
    """The directory of the checkpoint a model source loads, when it is on this machine (a
    built-in tiny checkpoint, the models directory, the Hugging Face cache)."""
    from huggingface_hub import try_to_load_from_cache

    family = source.tiny_family
    if family is not None:
        path = tiny.checkpoint_path(data_dir, family)
        return path if (path / "model_index.json").exists() else None
    if source.base.startswith("/"):
        path = Path(source.base)
        return path if path.is_relative_to(models_dir) and path.is_dir() else None
    try:
        cached = try_to_load_from_cache(source.base, "model_index.json")
    except Exception:
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def base_shapes(source: ModelSource, data_dir: str | Path, models_dir: Path) -> Shapes:
    """The shapes of the base a model source loads, from its weight headers; {} when its
    weights are not on this machine."""
    root = base_root(source, data_dir, models_dir)
    return checkpoint_shapes(root) if root is not None else {}
