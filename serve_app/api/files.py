"""Files: the local-disk store's signed links (GET a download, PUT an upload), no API key."""

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from serve_app.api.deps import gateway
from serve_app.api.gateway import Gateway
from serve_app.core.errors import NotFoundError, PayloadTooLargeError, UploadUsedError
from serve_app.core.keys import content_type_for
from serve_app.core.storage import LocalDiskStore, upload_method

router = APIRouter()


def local_store(gw: Gateway) -> LocalDiskStore:
    if not isinstance(gw.store, LocalDiskStore):
        raise NotFoundError("files are served by the object store, not by this API")
    return gw.store


async def read_capped(request: Request, cap: int) -> bytes:
    """The request body, refused as soon as it passes `cap` bytes."""
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > cap:
            raise PayloadTooLargeError(f"this upload is limited to {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.get("/v1/files/{key:path}")
async def get_file(key: str, expires: int = Query(...), signature: str = Query(...),
                   gw: Gateway = Depends(gateway)):
    local_store(gw).verify("GET", key, expires, signature)
    data = await gw.store.get_async(key)
    return Response(content=data, media_type=content_type_for(key))


@router.put("/v1/files/{key:path}", status_code=200)
async def put_file(key: str, request: Request, expires: int = Query(...),
                   signature: str = Query(...), size: int = Query(..., ge=1, le=2**40),
                   gw: Gateway = Depends(gateway)):
    """An upload: once, before the link expires, at most the size it was made for."""
    local_store(gw).verify(upload_method(size), key, expires, signature)
    try:
        await gw.store.stat_async(key)
        raise UploadUsedError("this upload link was used already; ask for a new one")
    except NotFoundError:
        pass
    data = await read_capped(request, size)
    await gw.store.put_async(key, data, content_type_for(key))
    return {"key": key, "size": len(data)}
