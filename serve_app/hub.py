"""The Hugging Face Hub, as validation sees it: the local cache first, the Hub when allowed
and reachable, and always an answer saying where it looked.

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


def locate_on_hub(repo_id: str, found) -> None:
    """Fill `found` (a `validation.Located`) with where `repo_id`'s model_index.json is, or
    why it could not be had."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import (
        HFValidationError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
    )

    found.looked.append("the Hugging Face cache")
    try:
        cached = try_to_load_from_cache(repo_id, "model_index.json")
    except HFValidationError as exc:  # e.g. "a--b/c", "a/b..c": shapes the Hub forbids
        found.errors.append(f"{repo_id!r} is not a valid Hugging Face repo id: {exc}")
        return
    if isinstance(cached, str):
        found.root = Path(cached).parent
        return
    not_cached = f"{repo_id}: model_index.json is not in the Hugging Face cache"
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
