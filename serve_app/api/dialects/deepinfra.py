"""DeepInfra's inference API: `POST /v1/inference/{model}` (the model id may contain `/`).

JSON or form fields (`curl -F prompt=...`), synchronous: the answer holds the images as data
URIs. With `image` it is an image-to-image edit. Submitted through the one submit path.

The schema below is DeepInfra's, data only.

A request turns itself into Tessera's own generation (or, with `image`, edit) fields; the
answer carries the images inline as data URIs, as DeepInfra's does.
"""

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from serve_app.api.deps import authenticate, gateway, request_options
from serve_app.api.dialects import native_request, request_fields
from serve_app.api.gateway import Gateway
from serve_app.api.submit import RequestOptions
from serve_app.wire.schema import EditRequest, GenerationRequest, TaskView


class DeepInfraRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str
    negative_prompt: str | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    strength: float | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    num_images: int | None = None
    webhook: str | None = None
    image: str | None = Field(None, description="image-to-image: a data URI, base64 or a URL")

    def to_native(self, model: str) -> dict[str, Any]:
        native: dict[str, Any] = {
            "model": model, "prompt": self.prompt, "response_format": "b64_json",
            **self.model_dump(include={"negative_prompt", "num_inference_steps",
                                       "guidance_scale", "seed", "webhook"},
                              exclude_none=True)}
        if self.width is not None or self.height is not None:  # one side: a square
            native["width"] = self.width or self.height
            native["height"] = self.height or self.width
        if self.num_images is not None:
            native["n"] = self.num_images
        if self.image is not None:
            native["image"] = self.image
            if self.strength is not None:
                native["strength"] = self.strength
        return native


class InferenceStatus(BaseModel):
    status: str
    runtime_ms: float
    cost: float
    tokens_generated: int = 0
    tokens_input: int = 0


class DeepInfraResponse(BaseModel):
    images: list[str]
    # null per image: no safety checker looked at it (none is configured), not "safe"
    nsfw_content_detected: list[bool | None]
    seed: int
    request_id: str | None
    inference_status: InferenceStatus


router = APIRouter()


@router.post("/v1/inference/{model:path}", response_model=DeepInfraResponse)
async def inference(model: str, request: Request, tenant: str = Depends(authenticate),
                    opts: RequestOptions = Depends(request_options),
                    gw: Gateway = Depends(gateway)):
    body = native_request(DeepInfraRequest, await request_fields(request))
    fields = body.to_native(model)
    if body.image is None:
        submitted = await gw.submitter.generation(
            tenant, native_request(GenerationRequest, fields), opts, wait_s=gw.reads.sync_wait_s)
    else:
        submitted = await gw.submitter.edit(tenant, native_request(EditRequest, fields), opts,
                                            wait_s=gw.reads.sync_wait_s)
    return deepinfra_answer(await gw.reads.finished(submitted.task, submitted.started, tenant,
                                                    opts.base_url))


def deepinfra_answer(view: TaskView) -> DeepInfraResponse:
    result = view.result
    images = [f"data:{d.content_type};base64,{d.b64_json}" for d in result.data]
    return DeepInfraResponse(
        images=images, nsfw_content_detected=[d.nsfw for d in result.data],
        seed=result.data[0].seed,
        request_id=view.id, inference_status=InferenceStatus(
            status="succeeded", runtime_ms=result.usage.runtime_ms or round(
                ((view.completed_at or time.time()) - view.created_at) * 1000, 2),
            cost=result.usage.cost, tokens_generated=result.usage.output_tokens))
