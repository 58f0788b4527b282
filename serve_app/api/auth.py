"""API keys: `TESSERA_API_KEYS="key1=tenantA,key2=tenantB"`, or one generated dev key."""

from __future__ import annotations

import hmac
import os
import re
import secrets
from pathlib import Path

from serve_app.core.errors import AuthenticationError, InvalidRequestError

DEV_TENANT = "dev"
TENANT_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")
DEV_KEY_FILE = "dev_api_key"
AUTH_SCHEMES = ("bearer", "token", "key")


def parse_api_keys(spec: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, tenant = item.partition("=")
        key, tenant = key.strip(), tenant.strip()
        if not sep or not key or not tenant:
            raise InvalidRequestError(f"TESSERA_API_KEYS entry {item!r} is not key=tenant")
        if not TENANT_RE.match(tenant):
            # tenant names become storage key prefixes
            raise InvalidRequestError(f"tenant {tenant!r} may hold only letters, digits, . _ -")
        keys[key] = tenant
    if not keys:
        raise InvalidRequestError("TESSERA_API_KEYS is set but holds no key=tenant entry")
    return keys


def dev_key(data_dir: str | Path) -> str:
    """The dev key kept in the data dir, created on first use."""
    path = Path(data_dir) / DEV_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{DEV_KEY_FILE}.{secrets.token_hex(4)}")
        tmp.write_text(f"tsk_dev_{secrets.token_urlsafe(24)}\n")
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # atomic: two replicas racing agree on one key
        except FileExistsError:
            pass
        tmp.unlink()
    return path.read_text().strip()


class ApiKeys:
    def __init__(self, keys: dict[str, str]):
        self._keys = dict(keys)

    @classmethod
    def from_env(cls, data_dir: str | Path, environ: dict | None = None) -> "ApiKeys":
        environ = os.environ if environ is None else environ
        spec = environ.get("TESSERA_API_KEYS", "").strip()
        return cls(parse_api_keys(spec) if spec else {dev_key(data_dir): DEV_TENANT})

    def tenant_for(self, headers) -> str:
        """Accept `Authorization: Bearer` (or `Token`, Replicate's older clients, or `Key`,
        fal's), `api_key` and `API-Key`, as hosted image APIs do."""
        token = None
        auth = headers.get("authorization")
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() in AUTH_SCHEMES and value.strip():
                token = value.strip()
        token = token or headers.get("api_key") or headers.get("api-key")
        if not token:
            raise AuthenticationError("missing API key: send Authorization: Bearer <key>",
                                      code="missing_api_key")
        for key, tenant in self._keys.items():
            if hmac.compare_digest(key.encode(), token.encode()):
                return tenant
        raise AuthenticationError("invalid API key")
