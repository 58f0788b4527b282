"""The Hugging Face Hub, as Tessera reads it (validation, adapters, fit checks): the local
cache first, the Hub when allowed and reachable.

`HF_HUB_OFFLINE` keeps it to the cache. Otherwise one quick TCP probe of the Hub decides first,
so an unreachable Hub is reported at once instead of after huggingface_hub's retries.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


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


def front_matter(text: str) -> dict:
    """A model card's YAML front matter ({} when it has none or it does not parse)."""
    import yaml

    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end < 0:
        return {}
    try:
        meta = yaml.safe_load(text[3:end]) or {}
    except yaml.YAMLError:
        return {}
    return meta if isinstance(meta, dict) else {}


def read_model_card(repo_id: str) -> str | None:
    """The repo's README.md from the Hub, when the Hub may be asked and answers."""
    from huggingface_hub import constants, hf_hub_download

    if hub_offline() or hub_unreachable(constants.ENDPOINT):
        return None
    try:
        return Path(hf_hub_download(repo_id, "README.md")).read_text(errors="replace")
    except Exception:
        return None


def cached_file(repo_id: str, filename: str) -> tuple[Path | None, str]:
    """(the cached file or None, where it looked)."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, filename)
    return (Path(cached) if isinstance(cached, str) else None,
            "the Hugging Face cache")
