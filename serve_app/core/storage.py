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
import io
import logging
import os
import secrets
import time
from abc import ABC, abstractmethod
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from serve_app.core.errors import (
    InvalidSignatureError,
    NotFoundError,
    StorageUnavailableError,
    TesseraError,
)
from serve_app.core.keys import check_key, content_type_for

logger = logging.getLogger("tessera.storage")

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

    @abstractmethod
    def upload_url(self, key: str, base_url: str, ttl_s: int, size: int) -> str:
        """A URL the client PUTs the bytes of an upload to (at most `size` of them), without
        an API key."""

    @abstractmethod
    def stat(self, key: str) -> tuple[int, str]:
        """(size, content type) of a stored object; NotFoundError when there is none."""

    @abstractmethod
    def delete_older_than(self, cutoff: float) -> int:
        """Remove objects last written before `cutoff` (epoch seconds); return how many."""

    def ensure_ready(self, retention_days: float | None) -> str:
        """Create what the store needs at start; say how retention is enforced."""
        return "sweeper"

    def own_key(self, url: str) -> str | None:
        """The key of one of this store's own download links (a still-valid one), else None:
        such an input is read from the store, not fetched over HTTP."""
        return None

    async def put_async(self, key: str, data: bytes, content_type: str) -> None:
        """Write with retries and backoff; give up with `storage_unavailable`."""
        from serve_app.core.metrics import m

        delay = self.backoff_s
        for attempt in range(1, self.retries + 1):
            try:
                started = time.perf_counter()
                await asyncio.to_thread(self.put, key, data, content_type)
                m().storage.observe(time.perf_counter() - started, tags={"op": "put"})
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
        return await self._call(self.get, key)

    async def stat_async(self, key: str) -> tuple[int, str]:
        return await self._call(self.stat, key)

    async def delete_async(self, keys: list[str]) -> None:
        await self._call(self.delete, keys)

    async def _call(self, fn, *args):
        try:
            return await asyncio.to_thread(fn, *args)
        except TesseraError:
            raise
        except Exception as exc:  # a backend that is down must read as 503, not as a crash
            raise StorageUnavailableError(f"the output store is unavailable: {exc}") from None


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

    def stat(self, key: str) -> tuple[int, str]:
        try:
            return self._path(key).stat().st_size, content_type_for(key)
        except FileNotFoundError:
            raise NotFoundError(f"no such file: {key}", param="key") from None

    def delete_older_than(self, cutoff: float) -> int:
        removed = 0
        for path in self.root.rglob("*"):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def _signature(self, method: str, key: str, expires: int) -> str:
        # surrogatepass: a key decoded from a URL may hold lone surrogates; it must still sign
        # (and fail to match), never crash
        msg = f"{method}\n{key}\n{expires}".encode("utf-8", "surrogatepass")
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def _signed(self, method: str, key: str, base_url: str, ttl_s: int) -> str:
        expires = int(time.time()) + ttl_s
        base = (self.public_base_url or base_url).rstrip("/")
        return (f"{base}/v1/files/{quote(key)}?expires={expires}"
                f"&signature={self._signature(method, key, expires)}")

    def url(self, key: str, base_url: str, ttl_s: int) -> str:
        return self._signed("GET", key, base_url, ttl_s)

    def upload_url(self, key: str, base_url: str, ttl_s: int, size: int) -> str:
        # the declared size is signed with the link: the PUT takes no more than that
        return self._signed(upload_method(size), key, base_url, ttl_s) + f"&size={size}"

    def own_key(self, url: str) -> str | None:
        parts = urlsplit(url)
        head, found, quoted = parts.path.partition("/v1/files/")
        query = parse_qs(parts.query)
        if not found or not {"expires", "signature"} <= set(query):
            return None
        key = unquote(quoted)
        try:
            self.verify("GET", key, int(query["expires"][0]), query["signature"][0])
        except (InvalidSignatureError, ValueError):
            return None
        return key

    def verify(self, method: str, key: str, expires: int, signature: str) -> None:
        if expires < time.time():
            raise InvalidSignatureError("this link has expired; ask the API for a fresh one")
        # compare bytes: compare_digest refuses str holding non-ASCII characters
        given = signature.encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(self._signature(method, key, expires).encode(), given):
            raise InvalidSignatureError("the link's signature does not match")


def upload_method(size: int) -> str:
    """What an upload link's signature covers besides key and expiry: PUT, and its size."""
    return f"PUT {size}"


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


class S3Store(OutputStore):
    """MinIO or any S3-compatible service, through the `minio` client."""

    def __init__(self, settings, public_base_url: str | None):
        import urllib3
        from minio import Minio

        endpoint, secure = settings.endpoint, settings.secure
        for scheme in ("http://", "https://"):
            if endpoint.startswith(scheme):
                endpoint, secure = endpoint[len(scheme):].rstrip("/"), scheme == "https://"
        # Short timeouts and few retries: our own retry loop (put_async) decides when to give
        # up, and a dead store must fail a task in seconds, not minutes.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=3, read=30),
            retries=urllib3.Retry(total=1, backoff_factor=0.1,
                                  status_forcelist=[500, 502, 503, 504]))
        # With the region given, presigning is local: no round trip per URL.
        self.client = Minio(endpoint, access_key=settings.access_key,
                            secret_key=settings.secret_key, secure=secure,
                            region=settings.region, http_client=http)
        self.bucket = settings.bucket
        self.public_base_url = public_base_url
        self._bucket_checked = False

    def ensure_ready(self, retention_days: float | None) -> str:
        from minio.commonconfig import ENABLED, Filter
        from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

        self._ensure_bucket()
        if not retention_days:
            return "none"
        if retention_days >= 1 and float(retention_days).is_integer():
            rule = Rule(ENABLED, rule_filter=Filter(prefix=""), rule_id="tessera-retention",
                        expiration=Expiration(days=int(retention_days)))
            try:
                self.client.set_bucket_lifecycle(self.bucket, LifecycleConfig([rule]))
                return "lifecycle"
            except Exception as exc:  # servers without lifecycle support: sweep instead
                logger.info("bucket lifecycle not supported (%s); sweeping instead", exc)
        return "sweeper"

    def _ensure_bucket(self) -> None:
        if self._bucket_checked:
            return
        from minio.error import S3Error

        if not self.client.bucket_exists(self.bucket):
            try:
                self.client.make_bucket(self.bucket)
            except S3Error as exc:  # another replica created it first
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        self._bucket_checked = True

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._ensure_bucket()
        self.client.put_object(self.bucket, check_key(key), io.BytesIO(data), len(data),
                               content_type=content_type)

    def get(self, key: str) -> bytes:
        from minio.error import S3Error

        try:
            response = self.client.get_object(self.bucket, check_key(key))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                raise NotFoundError(f"no such file: {key}", param="key") from None
            raise
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def stat(self, key: str) -> tuple[int, str]:
        from minio.error import S3Error

        try:
            st = self.client.stat_object(self.bucket, check_key(key))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "NotFound"):
                raise NotFoundError(f"no such file: {key}", param="key") from None
            raise
        return st.size, st.content_type

    def delete(self, keys: list[str]) -> None:
        from minio.deleteobjects import DeleteObject

        errors = list(self.client.remove_objects(
            self.bucket, [DeleteObject(check_key(k)) for k in keys]))
        if errors:
            raise RuntimeError(f"could not delete {len(errors)} objects: {errors[0]}")

    def delete_older_than(self, cutoff: float) -> int:
        old = [o.object_name for o in self.client.list_objects(self.bucket, recursive=True)
               if o.last_modified is not None and o.last_modified.timestamp() < cutoff]
        if old:
            self.delete(old)
        return len(old)

    def url(self, key: str, base_url: str, ttl_s: int) -> str:
        if self.public_base_url:
            return f"{self.public_base_url.rstrip('/')}/{quote(key)}"
        return self.client.presigned_get_object(self.bucket, key,
                                                expires=timedelta(seconds=ttl_s))

    def own_key(self, url: str) -> str | None:
        if self.public_base_url and url.startswith(self.public_base_url.rstrip("/") + "/"):
            return unquote(urlsplit(url[len(self.public_base_url.rstrip("/")):]).path[1:])
        parts = urlsplit(url)
        prefix = f"/{self.bucket}/"
        if parts.netloc == self.client._base_url.host and parts.path.startswith(prefix):
            return unquote(parts.path[len(prefix):])
        return None

    def upload_url(self, key: str, base_url: str, ttl_s: int, size: int) -> str:
        # A presigned PUT cannot bound its size; an object larger than declared is refused
        # where the upload is used (Gateway.find_upload).
        return self.client.presigned_put_object(self.bucket, check_key(key),
                                                expires=timedelta(seconds=ttl_s))


def make_store(config) -> OutputStore:
    """The store named by the config: S3/MinIO when an endpoint is set, else local disk."""
    storage = config.storage
    if storage.backend == "s3":
        return S3Store(storage.s3, storage.public_base_url)
    data = Path(config.data_dir)
    return LocalDiskStore(data / storage.local.subdir, data / "signing.key",
                          storage.public_base_url)
