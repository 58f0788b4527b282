"""fal's queue and run APIs under /fal, for fal's own clients unchanged:
`FAL_RUN_HOST=host:port/fal/run`, `FAL_QUEUE_RUN_HOST=host:port/fal/queue` and `FAL_KEY` = a
Tessera key (sent as `Authorization: Key …`).

- `POST /fal/run/{app_id}`: the result, once the task has completed;
- `POST /fal/queue/{app_id}[?fal_webhook=URL]`: `{request_id, response_url, status_url,
  cancel_url}`, followed under `/fal/queue/{owner}/{alias}/requests/{request_id}`
  (`/status[?logs=1]`, the result, `PUT …/cancel`).

A request is a native task seen through fal's view (`wire/fal.py`), submitted through the one
submit path, so `GET /v1/tasks/{id}` shows it too. Apps are named as fal's clients name them:
a catalog model by its Hub id (`tessera/tiny-flux`), fal's name of a catalog model
(`fal-ai/flux/schnell`, `FAL_APPS`), or a tenant's imported model as `<tenant>/<tm_id>`.
fal's client retries 408, 409 and 429: an error no retry can fix never answers with those.
"""

from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from serve_app.api.deps import authenticate, base_url, gateway, request_options
from serve_app.api.dialects import echoed, native_request
from serve_app.api.errors import install_error_handlers
from serve_app.api.gateway import Gateway
from serve_app.api.submit import RequestOptions
from serve_app.core.errors import (
    InvalidRequestError,
    TaskFailedError,
    TaskNotCancelableError,
    UnknownModelError,
)
from serve_app.core.models import is_tenant_model
from serve_app.core.tasks import Origin
from serve_app.wire import fal
from serve_app.wire.schema import IMAGE_SIZES, EditRequest, GenerationRequest

# fal's names of the catalog's models (an app with an edit endpoint takes image_url)
FAL_APPS = {
    "fal-ai/flux/schnell": "black-forest-labs/FLUX.1-schnell",
    "fal-ai/flux/dev": "black-forest-labs/FLUX.1-dev",
    "fal-ai/flux/dev/image-to-image": "black-forest-labs/FLUX.1-dev",
    "fal-ai/flux-lora": "black-forest-labs/FLUX.1-dev",
    "fal-ai/flux-lora/image-to-image": "black-forest-labs/FLUX.1-dev",
    "fal-ai/flux-lora/inpainting": "black-forest-labs/FLUX.1-dev",
    "fal-ai/flux-krea": "black-forest-labs/FLUX.1-Krea-dev",
    "fal-ai/flux-pro/kontext": "black-forest-labs/FLUX.1-Kontext-dev",
    "fal-ai/flux-kontext/dev": "black-forest-labs/FLUX.1-Kontext-dev",
    "fal-ai/flux-2": "black-forest-labs/FLUX.2-dev",
    "fal-ai/fast-sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "fal-ai/stable-diffusion-v35-large": "stabilityai/stable-diffusion-3.5-large",
    "fal-ai/stable-diffusion-v35-medium": "stabilityai/stable-diffusion-3.5-medium",
    "fal-ai/qwen-image": "Qwen/Qwen-Image",
    "fal-ai/qwen-image-edit": "Qwen/Qwen-Image-Edit",
    "fal-ai/z-image/turbo": "Tongyi-MAI/Z-Image-Turbo",
}


class Size(BaseModel):
    width: int
    height: int


class Lora(BaseModel):
    path: str
    scale: float = 1.0


class FalInput(BaseModel):
    """The inputs of fal's FLUX pages (and fast-sdxl's negative prompt). Unknown inputs are
    refused by name."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    image_size: Literal[tuple(IMAGE_SIZES)] | Size | None = Field(  # type: ignore[valid-type]
        None, description="a preset or {width, height}; omitted: the model's own size")
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = None
    num_images: int | None = Field(None, ge=1, le=4)
    output_format: Literal["jpeg", "png"] = "jpeg"
    sync_mode: bool = Field(False, description="images as data URIs instead of links")
    enable_safety_checker: bool = True
    loras: list[Lora] = []
    negative_prompt: str | None = None
    image_url: str | None = None
    mask_url: str | None = None
    strength: float | None = None
    acceleration: str | None = Field(None, description="accepted; not used")

    def to_native(self, model: str, webhook: str | None) -> dict[str, Any]:
        """The fields of a native GenerationRequest (or, with an image, EditRequest)."""
        native: dict[str, Any] = {
            "model": model, "prompt": self.prompt, "response_format": "url",
            "output_format": self.output_format,
            **self.model_dump(include={"num_inference_steps", "guidance_scale", "seed",
                                       "negative_prompt"}, exclude_none=True)}
        if self.image_size is not None:
            native["image_size"] = (self.image_size if isinstance(self.image_size, str)
                                    else self.image_size.model_dump())
        if self.num_images is not None:
            native["n"] = self.num_images
        if not self.enable_safety_checker:
            native["safety_checker"] = False
        if self.loras:
            native["loras"] = [lora.model_dump() for lora in self.loras]
        if webhook is not None:
            native["webhook"], native["webhook_events_filter"] = webhook, ["completed"]
        if self.image_url is not None:
            native["image"] = self.image_url
            if self.mask_url is not None:
                native["mask_image"] = self.mask_url
            if self.strength is not None:
                native["strength"] = self.strength
        elif self.mask_url is not None:
            raise InvalidRequestError("mask_url: give it with image_url", param="mask_url")
        return native


class Queued(BaseModel):
    request_id: str
    response_url: str
    status_url: str
    cancel_url: str
    queue_position: int | None = None


def detail(status: int, code: str, message: str, param: str | None) -> dict:
    """fal's error body: its client raises `detail`, and reads the type from `error_type`."""
    return {"detail": message, "error_type": code}


def native_model(app_id: str, tenant: str) -> str:
    """The model an app id means: fal's name of a catalog model, `<tenant>/<tm_id>`, or a
    catalog model's Hub id."""
    if app_id in FAL_APPS:
        return FAL_APPS[app_id]
    parts = app_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise UnknownModelError(f"no app {app_id!r}", param="app_id")
    owner, alias = parts
    if owner == tenant:
        if not is_tenant_model(alias):
            raise UnknownModelError(f"no app {app_id!r}", param="app_id")
        return alias
    return app_id


async def submit(gw: Gateway, tenant: str, app_id: str, arguments: dict,
                 opts: RequestOptions, webhook: str | None, wait_s: int | None):
    model = native_model(app_id, tenant)
    body = native_request(FalInput, arguments)
    native = body.to_native(model, webhook)
    origin = Origin(dialect="fal", model=app_id, input=echoed(arguments))
    if body.image_url is None:
        return await gw.submitter.generation(
            tenant, native_request(GenerationRequest, native), opts, wait_s=wait_s,
            origin=origin)
    return await gw.submitter.edit(tenant, native_request(EditRequest, native), opts,
                                   wait_s=wait_s, origin=origin)


router = APIRouter()


@router.post("/run/{app_id:path}")
async def run(app_id: str, arguments: dict[str, Any], tenant: str = Depends(authenticate),
              opts: RequestOptions = Depends(request_options), gw: Gateway = Depends(gateway)):
    submitted = await submit(gw, tenant, app_id, arguments, opts, None, gw.reads.sync_wait_s)
    task = await gw.reads.ended(submitted.task, submitted.started, tenant)
    return await fal.result(task, gw.store, opts.base_url, gw.config.storage.url_ttl_s)


@router.post("/queue/{app_id:path}", response_model=Queued)
async def enqueue(app_id: str, arguments: dict[str, Any],
                  fal_webhook: str | None = Query(None, max_length=2048),
                  tenant: str = Depends(authenticate),
                  opts: RequestOptions = Depends(request_options),
                  gw: Gateway = Depends(gateway)):
    submitted = await submit(gw, tenant, app_id, arguments, opts, fal_webhook, None)
    return Queued(request_id=submitted.task_id, queue_position=submitted.task.queue_position,
                  **fal.request_urls(opts.base_url, app_id, submitted.task_id))


@router.get("/queue/{owner}/{alias}/requests/{request_id}/status")
async def status(owner: str, alias: str, request_id: str, logs: bool = Query(False),
                 tenant: str = Depends(authenticate), links: str = Depends(base_url),
                 gw: Gateway = Depends(gateway)):
    return fal.status(await gw.tasks.get(request_id, tenant), links, logs)


@router.get("/queue/{owner}/{alias}/requests/{request_id}")
async def result(owner: str, alias: str, request_id: str, tenant: str = Depends(authenticate),
                 links: str = Depends(base_url), gw: Gateway = Depends(gateway)):
    task = await gw.tasks.get(request_id, tenant)
    if task.status in ("queued", "in_progress"):
        raise InvalidRequestError(f"request {request_id} is still {task.status}: follow its "
                                  "status_url", param="request_id")
    if task.status != "completed":
        error = task.error
        raise TaskFailedError(fal.task_error(task), code=error.code if error else task.status)
    return await fal.result(task, gw.store, links, gw.config.storage.url_ttl_s)


@router.put("/queue/{owner}/{alias}/requests/{request_id}/cancel", status_code=202)
async def cancel(owner: str, alias: str, request_id: str, tenant: str = Depends(authenticate),
                 gw: Gateway = Depends(gateway)):
    try:
        await gw.tasks.cancel(request_id, tenant)
    except TaskNotCancelableError:
        return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)
    return {"status": "CANCELLATION_REQUESTED"}


app = FastAPI(title="Tessera: fal's queue and run APIs", version="0.1.0",
              description="fal's run, submit, status, result and cancel over Tessera.")
install_error_handlers(app, shape=detail, statuses={409: 400})
app.include_router(router)
