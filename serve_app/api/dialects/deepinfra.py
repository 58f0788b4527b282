"""DeepInfra's inference API: `POST /v1/inference/{model}` (the model id may contain `/`).

JSON or form fields (`curl -F prompt=...`), synchronous: the answer holds the images as data
URIs. With `image` it is an image-to-image edit. Submitted through the one submit path.
"""

import time

from fastapi import APIRouter, Depends, Request

from serve_app.api.deps import authenticate, gateway
from serve_app.api.dialects import native_request, request_fields
from serve_app.api.gateway import Gateway
from serve_app.protocol import EditRequest, GenerationRequest, TaskView
from serve_app.protocol_deepinfra import DeepInfraRequest, DeepInfraResponse, InferenceStatus

router = APIRouter()


@router.post("/v1/inference/{model:path}", response_model=DeepInfraResponse)
async def inference(model: str, request: Request, tenant: str = Depends(authenticate),
                    gw: Gateway = Depends(gateway)):
    body = native_request(DeepInfraRequest, await request_fields(request))
    fields = body.to_native(model)
    if body.image is None:
        submitted = await gw.submit_generation(
            tenant, native_request(GenerationRequest, fields), request, wait_s=gw.sync_wait_s)
    else:
        submitted = await gw.submit_edit(tenant, native_request(EditRequest, fields), request,
                                         wait_s=gw.sync_wait_s)
    return deepinfra_answer(await gw.finished(submitted, tenant, gw.base_url_for(request)))


def deepinfra_answer(view: TaskView) -> DeepInfraResponse:
    result = view.result
    images = [f"data:{d.content_type};base64,{d.b64_json}" for d in result.data]
    return DeepInfraResponse(
        images=images, nsfw_content_detected=[None] * len(images), seed=result.data[0].seed,
        request_id=view.id, inference_status=InferenceStatus(
            status="succeeded", runtime_ms=result.usage.runtime_ms or round(
                ((view.completed_at or time.time()) - view.created_at) * 1000, 2),
            cost=result.usage.cost, tokens_generated=result.usage.output_tokens))
