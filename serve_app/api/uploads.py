"""Uploads: a signed PUT link for an input image, and what arrived there."""

import asyncio
import time

from fastapi import APIRouter, Depends

from serve_app.api.deps import authenticate, base_url, gateway
from serve_app.api.gateway import Gateway
from serve_app.api.submit import new_id
from serve_app.core.errors import PayloadTooLargeError
from serve_app.core.keys import upload_key
from serve_app.wire.schema import UploadCreated, UploadInfo, UploadRequest

router = APIRouter()


@router.post("/v1/uploads", response_model=UploadCreated, status_code=201)
async def create_upload(body: UploadRequest, tenant: str = Depends(authenticate),
                        links: str = Depends(base_url), gw: Gateway = Depends(gateway)):
    cap = gw.config.storage.max_upload_bytes
    if body.size > cap:
        raise PayloadTooLargeError(f"uploads are limited to {cap} bytes", param="size")
    upload_id, ttl = new_id("upl"), gw.config.storage.upload_ttl_s
    key = upload_key(tenant, upload_id, body.content_type)
    await gw.models.add_upload(tenant, upload_id, key, body.content_type, time.time() + ttl,
                               body.size)  # 429 past the tenant's quota
    url = await asyncio.to_thread(gw.store.upload_url, key, links, ttl, body.size)
    return UploadCreated(upload_id=upload_id, upload_url=url,
                         headers={"Content-Type": body.content_type},
                         expires_at=time.time() + ttl, max_bytes=body.size)


@router.get("/v1/uploads/{upload_id}", response_model=UploadInfo)
async def get_upload(upload_id: str, tenant: str = Depends(authenticate),
                     gw: Gateway = Depends(gateway)):
    _, size, content_type = await gw.inputs.find_upload(tenant, upload_id)
    return UploadInfo(upload_id=upload_id, size=size, content_type=content_type)
