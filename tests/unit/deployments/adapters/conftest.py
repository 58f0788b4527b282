"""The tiny FLUX pipeline with two peft-made adapters, loaded once for the package's tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from deployments.adapters.cache import AdapterCache
from deployments.adapters.sources import WEIGHTS
from deployments.adapters.tiny import build_tiny_lora, ensure_tiny_lora
from deployments.calls import PipelineCalls
from deployments.loading import load_pipeline
from deployments.registry import FAMILIES
from serve_app.core.types import ModelSource

TINY_FLUX = ModelSource(base="tessera/tiny-flux")


@dataclass
class Flux:
    pipe: object
    calls: PipelineCalls
    cache: AdapterCache
    first: bytes  # tessera/tiny-flux-lora
    second: bytes  # another random adapter of the same shape
    data_dir: Path


@pytest.fixture(scope="package")
def flux(tmp_path_factory) -> Flux:
    data_dir = tmp_path_factory.mktemp("adapters")
    pipe = load_pipeline(TINY_FLUX, str(data_dir), "cpu", None, batch_invariant=True)
    first = (ensure_tiny_lora(data_dir, "flux") / WEIGHTS).read_bytes()
    build_tiny_lora(pipe, "flux", data_dir / "second", seed=1)
    second = (data_dir / "second" / WEIGHTS).read_bytes()
    cache = AdapterCache(cpu_bytes=1 << 30, device_bytes=1 << 30, batch_invariant=True)
    calls = PipelineCalls(FAMILIES["flux"], 4, "cpu", batch_invariant=True, adapters=cache)
    return Flux(pipe, calls, cache, first, second, data_dir)
