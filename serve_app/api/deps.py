"""Route dependencies: who is calling, and the gateway to the rest of Tessera.

Both come from this replica's `Ingress` instance, which Serve hands out as the replica's
servable object. (Not `app.state` or module state: Serve serves a copy of the FastAPI app frozen
when the ingress class was decorated, so what `__init__` sets there does not reach the routes.)

No `from __future__ import annotations` in the API modules: FastAPI and Serve read the real
annotation objects of route signatures.
"""

from fastapi import Request
from ray import serve

from serve_app.api.gateway import Gateway


def _ingress():
    return serve.get_replica_context().servable_object


# Both are `async def` although neither awaits: FastAPI runs a plain `def` dependency in its
# thread pool, a thread hop on every request for a dictionary lookup.
async def authenticate(request: Request) -> str:
    """The caller's tenant, from its API key (Bearer, `api_key` or `API-Key`)."""
    return _ingress().keys.tenant_for(request.headers)


async def gateway() -> Gateway:
    return _ingress().gateway
