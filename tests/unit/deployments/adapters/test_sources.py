"""The one adapter resolver (`deployments.adapters.sources`): every kind of source to an
adapter file, read without building anything, pickles never read."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

from deployments.adapters.sources import WEIGHTS, AdapterResolver, tiny_lora_path
from serve_app.core.errors import (
    LoraIncompatibleError,
    LoraInvalidError,
    LoraUnreachableError,
    LoraUnsupportedFormatError,
    PayloadTooLargeError,
    UnknownModelError,
)
from serve_app.core.models import AdapterSource, ModelRecord
from serve_app.core.types import ModelSource, ParameterSpec

ADAPTER = save({"transformer.a.to_q.lora_A.weight": torch.ones(2, 4),
                "transformer.a.to_q.lora_B.weight": torch.ones(4, 2)})
CARD = "---\nbase_model: tessera/tiny-flux\n---\n# an adapter\n"


def resolver(tmp_path: Path, **kw) -> AdapterResolver:
    return AdapterResolver(str(tmp_path / "data"), tmp_path / "models", 1 << 20, 5.0, True, **kw)


def repository(directory: Path, *files: str) -> Path:
    directory.mkdir(parents=True)
    for name in files:
        (directory / name).write_bytes(ADAPTER)
    (directory / "README.md").write_text(CARD)
    return directory


def read(r: AdapterResolver, path: str, tenant: str = "a"):
    return asyncio.run(r.resolve(tenant, AdapterSource.parse(path, "loras[0].path"),
                                 "loras[0].path"))


def test_a_hub_adapter_comes_from_the_cache_with_its_card(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--style" / "snapshots" / ("0" * 40)
    repository(snapshot, "style.safetensors")
    (cache / "models--someone--style" / "refs").mkdir()
    (cache / "models--someone--style" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    found = read(resolver(tmp_path), "someone/style")
    assert found.data == ADAPTER and found.card_base_model == "tessera/tiny-flux"
    assert found.source == AdapterSource(kind="hub", name="someone/style")
    with pytest.raises(LoraUnreachableError, match="HF_HUB_OFFLINE"):  # not cached: offline
        read(resolver(tmp_path), "someone/other")


def test_a_directory_under_the_models_directory_and_nowhere_else(tmp_path):
    r = resolver(tmp_path)
    inside = repository(tmp_path / "models" / "mine", WEIGHTS)
    found = r.read(AdapterSource(kind="local", name=str(inside)), "hf_model_id")
    assert found.data == ADAPTER
    outside = repository(tmp_path / "elsewhere", WEIGHTS)
    with pytest.raises(LoraUnreachableError, match="no longer in the models directory"):
        r.read(AdapterSource(kind="local", name=str(outside)), "hf_model_id")


def test_a_repository_names_its_file_or_holds_one(tmp_path):
    r = resolver(tmp_path)
    two = repository(tmp_path / "models" / "two", "a.safetensors", "b.safetensors")
    with pytest.raises(LoraInvalidError, match="several .safetensors"):
        r.read(AdapterSource(kind="local", name=str(two)), "p")
    assert r.read(AdapterSource(kind="local", name=str(two), file="b.safetensors"), "p").data
    pickled = repository(tmp_path / "models" / "pickled", "adapter.bin")
    with pytest.raises(LoraUnsupportedFormatError):
        r.read(AdapterSource(kind="local", name=str(pickled)), "p")
    with pytest.raises(LoraUnsupportedFormatError):  # never opened, whatever it holds
        r.read(AdapterSource(kind="local", name=str(pickled), file="adapter.bin"), "p")
    big = resolver(tmp_path)
    big.max_bytes = 10
    with pytest.raises(PayloadTooLargeError):
        big.read(AdapterSource(kind="local", name=str(two), file="a.safetensors"), "p")


def test_a_tiny_adapter_is_read_where_it_is_made_and_made_by_its_owner(tmp_path):
    made: list[str] = []

    async def tiny_ready(family: str) -> None:  # what the model registry does for an ingress
        made.append(family)
        repository(tiny_lora_path(tmp_path / "data", family), WEIGHTS)

    assert read(resolver(tmp_path, tiny_ready=tiny_ready), "tessera/tiny-sdxl-lora").data
    assert read(resolver(tmp_path, tiny_ready=tiny_ready), "tessera/tiny-sdxl-lora").data
    assert made == ["sdxl"]  # once: then it is on disk
    with pytest.raises(LoraUnreachableError, match="has not been built"):
        read(resolver(tmp_path), "tessera/tiny-flux-lora")  # nobody to make it
    with pytest.raises(LoraUnreachableError, match="no built-in tiny LoRA"):
        read(resolver(tmp_path, tiny_ready=tiny_ready), "tessera/tiny-pixart-sigma-lora")
    assert made == ["sdxl"]


def test_a_tenants_lora_model_resolves_to_its_own_source_and_no_one_elses(tmp_path):
    repository(tmp_path / "models" / "mine", WEIGHTS)
    records = {
        ("a", "tm_mine_1"): ModelRecord(
            id="tm_mine_1", tenant="a", hf_model_id="mine", family="flux", kind="lora",
            source=ModelSource(base="tessera/tiny-flux"), price_per_image=0.01,
            parameters=ParameterSpec(),
            adapter=AdapterSource(kind="local", name=str(tmp_path / "models" / "mine"))),
        ("a", "tm_base_1"): ModelRecord(
            id="tm_base_1", tenant="a", hf_model_id="x", family="flux",
            source=ModelSource(base="tessera/tiny-flux"), price_per_image=0.01,
            parameters=ParameterSpec())}

    async def lookup(tenant: str, model_id: str, param: str) -> ModelRecord:
        if (tenant, model_id) not in records:
            raise UnknownModelError(f"model {model_id!r} not found", param=param)
        return records[(tenant, model_id)]

    r = resolver(tmp_path, lookup=lookup)
    found = read(r, "tm_mine_1")
    assert found.data == ADAPTER and found.source.kind == "local"
    with pytest.raises(UnknownModelError):
        read(r, "tm_mine_1", tenant="b")
    with pytest.raises(LoraIncompatibleError, match="a model, not a LoRA"):
        read(r, "tm_base_1")


def test_a_url_is_fetched_through_the_outbound_guard(tmp_path):
    class One(BaseHTTPRequestHandler):
        def do_GET(self):
            body = ADAPTER if self.path == "/a.safetensors" else b""
            self.send_response(200 if body else 404)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), One)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert read(resolver(tmp_path), f"{base}/a.safetensors").data == ADAPTER
        with pytest.raises(LoraUnreachableError, match="404"):
            read(resolver(tmp_path), f"{base}/missing.safetensors")
        guarded = AdapterResolver(str(tmp_path), tmp_path, 1 << 20, 5.0, False)
        with pytest.raises(LoraUnreachableError):  # loopback, where private URLs are refused
            read(guarded, f"{base}/a.safetensors")
    finally:
        server.shutdown()
