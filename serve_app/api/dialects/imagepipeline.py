"""imagepipeline.io's generate v3: `POST /generate/v3` (key in `API-Key`) and
`GET /generate/v3/status/{id}`.

Asynchronous like the original: the answer is PENDING with the task id (SUCCESS at once only
with `Prefer: wait`); with `queued_image_urls` it already holds the links the images will have.
Routes that name no model use `compat.default_model`. `file_prefix` starts the output file names;
`batch_id` comes back in every answer.
"""

from fastapi import APIRouter, Depends, Request

from serve_app.api.deps import authenticate, gateway
from serve_app.api.dialects import native_request
from serve_app.api.gateway import Gateway, requested_wait
from serve_app.protocol import GenerationRequest, TaskView
from serve_app.protocol_imagepipeline import ImagePipelineAnswer, ImagePipelineRequest

router = APIRouter()


@router.post("/generate/v3", response_model=ImagePipelineAnswer)
async def generate(body: ImagePipelineRequest, request: Request,
                   tenant: str = Depends(authenticate), gw: Gateway = Depends(gateway)):
    native = native_request(GenerationRequest, body.to_native(gw.config.compat.default_model))
    metadata = {"batch_id": body.batch_id} if body.batch_id else {}
    submitted = await gw.submit_generation(
        tenant, native, request, file_prefix=body.file_prefix or "", metadata=metadata,
        wait_s=requested_wait(request))
    view = await gw.task_view(submitted.task, gw.base_url_for(request))
    queued_urls = (gw.future_urls(tenant, view, body.file_prefix or "", gw.base_url_for(request))
                   if body.queued_image_urls else [])
    return answer(view, queued_urls)


@router.get("/generate/v3/status/{task_id}", response_model=ImagePipelineAnswer)
async def status(task_id: str, request: Request, tenant: str = Depends(authenticate),
                 gw: Gateway = Depends(gateway)):
    return answer(await gw.read_task(task_id, tenant, gw.base_url_for(request)))


def answer(view: TaskView, queued_urls: list[str] | None = None) -> ImagePipelineAnswer:
    batch_id = view.metadata.get("batch_id")
    if view.status == "completed":
        return ImagePipelineAnswer(status="SUCCESS", id=view.id, batch_id=batch_id,
                                   download_urls=[d.url for d in view.result.data])
    if view.status in ("queued", "in_progress"):
        return ImagePipelineAnswer(status="PENDING", id=view.id, batch_id=batch_id,
                                   download_urls=queued_urls or [])
    return ImagePipelineAnswer(status="FAILURE", id=view.id, batch_id=batch_id,
                               error=view.error.message if view.error else view.status)
