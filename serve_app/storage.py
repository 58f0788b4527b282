"""Where generated images live.

`OutputStore` is the interface; `LocalDiskStore` is the embedded default (files under the data
dir, served by the ingress at signed `/v1/files/...` URLs). Blocking calls are plain methods; the
`*_async` wrappers run them in a thread, because a slow disk or object store must never stall an
event loop that is also answering HTTP.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from abc import ABC, abstractmethod
from pathlib import Path
from urllib.parse import quote

from serve_app.errors import NotFoundError, TesseraError

logger = logging.getLogger("tessera.storage")

_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


class StorageUnavailableError(TesseraError):
    status_code = 503
    code = "storage_unavailable"


class InvalidSignatureError(TesseraError):
    status_code = 403
    code = "invalid_signature"


def content_type_for(key: str) -> str:
    ext = key.rsplit(".", 1)[-1].lower()
    return {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
            "webp": "image/webp"}.get(ext, "application/octet-stream")


def check_key(key: str) -> str:
    if not _KEY_RE.match(key) or any(part in ("", ".", "..") for part in key.split("/")):
        raise NotFoundError(f"no such file: {key}", param="key")
    return key


class OutputStore(ABC):
    retries = 3
    backoff_s = 0.2

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    @abstractmethod
    def get(self, key: str) -> bytes: ...

    @abstractmethod
    def url(self, key: str, base_url: str, ttl_s: int) -> str: ...

    @abstractmethod
    def delete(self, keys: list[str]) -> None: ...

    async def put_async(self, key: str, data: bytes, content_type: str) -> None:
        """Write with retries and backoff; give up with `storage_unavailable`."""
        delay = self.backoff_s
        for attempt in range(1, self.retries + 1):
            try:
                await asyncio.to_thread(self.put, key, data, content_type)
                return
            except Exception as exc:  # any backend failure counts: disk full, connection refused
                logger.warning("storage write %s failed (attempt %d/%d): %s", key, attempt,
                               self.retries, exc)
                if attempt == self.retries:
                    raise StorageUnavailableError(
                        f"the output store did not accept the image after {self.retries} "
                        f"attempts: {exc}") from None
                await asyncio.sleep(delay)
                delay *= 2

    async def get_async(self, key: str) -> bytes:
        return await asyncio.to_thread(self.get, key)

    async def delete_async(self, keys: list[str]) -> None:
        await asyncio.to_thread(self.delete, keys)


class LocalDiskStore(OutputStore):
    def __init__(self, root: str | Path, secret_path: str | Path, public_base_url: str | None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.public_base_url = public_base_url
        self._secret = _load_or_create_secret(Path(secret_path))

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + f".tmp{secrets.token_hex(4)}")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # readers never see half an image

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"no such file: {key}", param="key") from None

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)

    def _signature(self, key: str, expires: int) -> str:
        msg = f"{key}\n{expires}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def url(self, key: str, base_url: str, ttl_s: int) -> str:
        expires = int(time.time()) + ttl_s
        base = (self.public_base_url or base_url).rstrip("/")
        return (f"{base}/v1/files/{quote(key)}?expires={expires}"
                f"&signature={self._signature(key, expires)}")

    def verify(self, key: str, expires: int, signature: str) -> None:
        if expires < time.time():
            raise InvalidSignatureError("this link has expired; poll the task for a fresh one")
        if not hmac.compare_digest(self._signature(key, expires), signature):
            raise InvalidSignatureError("the link's signature does not match")


def _load_or_create_secret(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{secrets.token_hex(4)}")
        tmp.write_bytes(secrets.token_bytes(32))
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # atomic: when two replicas race, the first secret wins
        except FileExistsError:
            pass
        tmp.unlink()
    return path.read_bytes()


def make_store(config) -> OutputStore:
    """The store named by the config: S3/MinIO when an endpoint is set, else local disk."""
    storage = config.storage
    data = Path(config.data_dir)
    return LocalDiskStore(data / storage.local.subdir, data / "signing.key",
                          storage.public_base_url)
