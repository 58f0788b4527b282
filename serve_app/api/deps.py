"""Route dependencies: who is calling, the gateway to the rest of Tessera, and what a
request's headers say (parsed once, into typed options; nothing below the routes reads HTTP).

The caller and the gateway come from this replica's `Ingress` instance, which Serve hands out
as the replica's servable object. (Not `app.state` or module state: Serve serves a copy of the
FastAPI app frozen when the ingress class was decorated, so what `__init__` sets there does not
reach the routes.)

No `from __future__ import annotations` in the API modules: FastAPI and Serve read the real
annotation objects of route signatures.
"""

from fastapi import Request
from ray import serve

from serve_app.api.gateway import Gateway
from serve_app.api.reads import MAX_WAIT_S
from serve_app.api.submit import RequestOptions
from serve_app.core.errors import InvalidRequestError
from serve_app.core.rules import parse_duration


def _ingress():
    return serve.get_replica_context().servable_object


# All are `async def` although none awaits: FastAPI runs a plain `def` dependency in its
# thread pool, a thread hop on every request for a dictionary lookup.
async def authenticate(request: Request) -> str:
    """The caller's tenant, from its API key (Bearer, `api_key` or `API-Key`)."""
    return _ingress().keys.tenant_for(request.headers)


async def gateway() -> Gateway:
    return _ingress().gateway


async def base_url(request: Request) -> str:
    """Where the answer's links point (`public_url`, never the request's Host)."""
    scope = request.scope  # app_root_path: the app's own prefix, not a mounted dialect's
    return _ingress().gateway.base_url(scope.get("app_root_path", scope.get("root_path", "")))


def preferred_wait(prefer: str | None) -> int | None:
    """Seconds asked for by `Prefer: wait` or `Prefer: wait=N` (RFC 7240), at most MAX_WAIT_S;
    None when no wait is asked for (a malformed value is ignored, as the RFC allows)."""
    for token in (prefer or "").replace(";", ",").split(","):
        name, _, value = token.strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip().strip('"')
        if not value:
            return MAX_WAIT_S
        # ASCII digits only ("²".isdigit() is true), and few of them: int() of thousands of
        # digits raises
        if value.isascii() and value.isdigit():
            return min(int(value[:6]), MAX_WAIT_S) if len(value) <= 6 else MAX_WAIT_S
        return None
    return None


async def request_options(request: Request) -> RequestOptions:
    """`Cancel-After`, `Idempotency-Key` and `Prefer: wait` of a generation or edit."""
    cancel_after = None
    header = request.headers.get("cancel-after")
    if header is not None:
        try:
            cancel_after = parse_duration(header)
        except ValueError as exc:
            raise InvalidRequestError(f"Cancel-After: {exc}", param="Cancel-After") from None
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 255:
        raise InvalidRequestError("Idempotency-Key must be 1 to 255 characters",
                                  param="Idempotency-Key")
    return RequestOptions(base_url=await base_url(request), path=request.url.path,
                          cancel_after_s=cancel_after, idempotency_key=key,
                          wait_s=preferred_wait(request.headers.get("prefer")))
