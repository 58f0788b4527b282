"""imagepipeline.io's generate v3: `POST /generate/v3` (key in `API-Key`) and
`GET /generate/v3/status/{id}`.

Asynchronous like the original: the answer is PENDING with the task id (SUCCESS at once only
with `Prefer: wait`); with `queued_image_urls` it already holds the links the images will have.
Routes that name no model use `compat.default_model`. `file_prefix` starts the output file names;
`batch_id` comes back in every answer.

The schema below is imagepipeline.io's generate v3 (`POST /generate/v3`,
`GET /generate/v3/status/{id}`), data only.
"""

from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from serve_app.api.deps import authenticate, base_url, gateway, request_options
from serve_app.api.dialects import native_request
from serve_app.api.gateway import Gateway
from serve_app.api.submit import RequestOptions
from serve_app.wire.schema import GenerationRequest, TaskView

FILE_PREFIX = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ImagePipelineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str
    negative_prompt: str | None = None
    num_inference_steps: int | None = None
    samples: int = Field(2, ge=1, le=4)
    width: int = Field(1024, le=1536)
    height: int = Field(1024, le=1536)
    seed: int = -1
    webhook: str | None = None
    batch_id: str | None = Field(None, max_length=128)
    file_prefix: str | None = Field(None, pattern=FILE_PREFIX)
    queued_image_urls: bool = False
    direct_link: bool = False  # our links are direct already
    server_id: str | None = None  # one Tessera is one "server": accepted, not used
    model: str | None = Field(None, description="Tessera's addition: default compat.default_model")

    def to_native(self, default_model: str) -> dict[str, Any]:
        return {"model": self.model or default_model, "prompt": self.prompt,
                "negative_prompt": self.negative_prompt,
                "num_inference_steps": self.num_inference_steps, "n": self.samples,
                "width": self.width, "height": self.height,
                "seed": None if self.seed == -1 else self.seed, "webhook": self.webhook}


class ImagePipelineAnswer(BaseModel):
    status: Literal["PENDING", "SUCCESS", "FAILURE"]
    id: str
    download_urls: list[str] = []
    batch_id: str | None = None
    error: str | None = None


router = APIRouter()


@router.post("/generate/v3", response_model=ImagePipelineAnswer)
async def generate(body: ImagePipelineRequest, tenant: str = Depends(authenticate),
                   opts: RequestOptions = Depends(request_options),
                   gw: Gateway = Depends(gateway)):
    native = native_request(GenerationRequest, body.to_native(gw.config.compat.default_model))
    metadata = {"batch_id": body.batch_id} if body.batch_id else {}
    submitted = await gw.submitter.generation(
        tenant, native, opts, file_prefix=body.file_prefix or "", metadata=metadata,
        wait_s=opts.wait_s)
    view = await gw.reads.view(submitted.task, opts.base_url)
    queued_urls = (gw.reads.future_urls(submitted.task, body.file_prefix or "", opts.base_url)
                   if body.queued_image_urls else [])
    return answer(view, queued_urls)


@router.get("/generate/v3/status/{task_id}", response_model=ImagePipelineAnswer)
async def status(task_id: str, tenant: str = Depends(authenticate),
                 links: str = Depends(base_url), gw: Gateway = Depends(gateway)):
    return answer(await gw.reads.read(task_id, tenant, links))


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
