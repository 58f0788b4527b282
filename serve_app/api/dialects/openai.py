"""The OpenAI Images API under /openai/v1, for `OpenAI(base_url=".../openai/v1", api_key=KEY)`.

`images.generate` and `images.edit` submit through the one submit path and wait for the task
(synchronous, as the SDK expects); `models.list` and `models.retrieve` read the same models as
/v1/models. Errors come in OpenAI's shape with the status codes the SDK maps to its exceptions.
Parameters the SDK sends that Tessera does not use are listed in `Tessera-Ignored-Parameters`.

The schema below is the OpenAI Images API's (what the OpenAI SDK sends and reads), data only.

Requests turn themselves into Tessera's own requests (`to_native`), so the dialect adds no
logic of its own: every field the SDK can send is accepted; Tessera's parameters ride in
`extra_body`; the rest is listed as ignored.
"""

import base64
import math
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from serve_app.api.deps import authenticate, gateway, request_options
from serve_app.api.dialects import MAX_FORM_FIELDS, MAX_FORM_FILES, native_request
from serve_app.api.errors import install_error_handlers
from serve_app.api.gateway import Gateway
from serve_app.api.submit import RequestOptions
from serve_app.core.errors import InvalidRequestError
from serve_app.core.models import ModelRecord
from serve_app.wire.schema import EditRequest, GenerationRequest, TaskView

# Tessera parameters a client passes with the SDK's `extra_body`
EXTRA = ("negative_prompt", "seed", "num_inference_steps", "guidance_scale", "cancel_after",
         "webhook", "webhook_events_filter", "loras", "lora_scale")
# OpenAI's images parameters that Tessera accepts and does not use
OPENAI_UNUSED = frozenset({"background", "input_fidelity", "moderation", "output_compression",
                           "partial_images", "quality", "stream", "style", "user"})


class OpenAIImageRequest(BaseModel):
    # The SDK's fields grow with OpenAI's models: accept them all, list what is not used.
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    prompt: str
    n: int | None = None
    size: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    output_format: str | None = None

    def ignored(self) -> list[str]:
        """What the answer's Tessera-Ignored-Parameters header lists: OpenAI's own parameter
        names that Tessera does not use, and only a count of any other keys (a response header
        is never built from the client's text)."""
        unused = {k for k, v in (self.model_extra or {}).items()
                  if k not in EXTRA and k != "strength" and v is not None}
        known = sorted(unused & OPENAI_UNUSED)
        others = len(unused - OPENAI_UNUSED)
        return known + ([f"{others} unrecognised"] if others else [])

    def to_native(self, default_model: str, extra: tuple[str, ...] = EXTRA) -> dict[str, Any]:
        """The fields of a Tessera GenerationRequest / EditRequest."""
        native: dict[str, Any] = {"model": self.model or default_model, "prompt": self.prompt}
        if self.n is not None:
            native["n"] = self.n
        if self.size and self.size != "auto":
            native["size"] = self.size
        if self.response_format:
            native["response_format"] = self.response_format
        if self.output_format:
            native["output_format"] = self.output_format
        native.update({k: v for k, v in (self.model_extra or {}).items()
                       if k in extra and v is not None})
        return native


class OpenAIImage(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class OpenAIInputTokens(BaseModel):
    text_tokens: int
    image_tokens: int


class OpenAIUsage(BaseModel):
    input_tokens: int
    input_tokens_details: OpenAIInputTokens
    output_tokens: int
    total_tokens: int


class OpenAIImagesResponse(BaseModel):
    created: int
    data: list[OpenAIImage]
    usage: OpenAIUsage
    size: str | None = None
    output_format: str | None = None


def text_tokens(prompt: str) -> int:
    """Roughly what a BPE tokenizer counts: four characters a token."""
    return max(1, math.ceil(len(prompt) / 4))


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel] = Field(default_factory=list)


ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "invalid_request_error",
               409: "invalid_request_error", 413: "invalid_request_error",
               422: "invalid_request_error", 429: "rate_limit_error"}


def openai_error(status: int, code: str, message: str, param: str | None) -> dict:
    """OpenAI's error shape; the status codes are Tessera's, which the SDK maps to its
    exception classes (400 BadRequestError, 401 AuthenticationError, 404 NotFoundError, ...)."""
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"),
                      "param": param, "code": code}}


router = APIRouter(prefix="/v1")
IGNORED_HEADER = "Tessera-Ignored-Parameters"


@router.post("/images/generations", response_model=OpenAIImagesResponse)
async def generations(body: OpenAIImageRequest, tenant: str = Depends(authenticate),
                      opts: RequestOptions = Depends(request_options),
                      gw: Gateway = Depends(gateway)):
    native = native_request(GenerationRequest, body.to_native(gw.config.compat.default_model))
    submitted = await gw.submitter.generation(tenant, native, opts, wait_s=gw.reads.sync_wait_s)
    view = await gw.reads.finished(submitted.task, submitted.started, tenant, opts.base_url)
    return images_response(view, native.prompt, 0, body.ignored())


@router.post("/images/edits", response_model=OpenAIImagesResponse)
async def edits(request: Request, tenant: str = Depends(authenticate),
                opts: RequestOptions = Depends(request_options),
                gw: Gateway = Depends(gateway)):
    body, images, mask = await read_edit_form(request)
    fields = body.to_native(gw.config.compat.default_model, EXTRA + ("strength",))
    native = native_request(EditRequest, {**fields, "image": images, "mask_image": mask})
    submitted = await gw.submitter.edit(tenant, native, opts, wait_s=gw.reads.sync_wait_s)
    view = await gw.reads.finished(submitted.task, submitted.started, tenant, opts.base_url)
    image_tokens = len(images) * (view.request.width // 16) * (view.request.height // 16)
    return images_response(view, native.prompt, image_tokens, body.ignored())


@router.get("/models", response_model=OpenAIModelList)
async def list_models(tenant: str = Depends(authenticate), gw: Gateway = Depends(gateway)):
    models = await gw.resolver.models_for(tenant)
    return OpenAIModelList(data=[openai_model(r) for r, reason in models if reason is None])


@router.get("/models/{model_id:path}", response_model=OpenAIModel)
async def retrieve_model(model_id: str, tenant: str = Depends(authenticate),
                         gw: Gateway = Depends(gateway)):
    return openai_model(await gw.resolver.resolve(tenant, model_id))


def openai_model(record: ModelRecord) -> OpenAIModel:
    return OpenAIModel(id=record.id, created=int(record.created_at or 0), owned_by=record.tenant)


async def read_edit_form(request: Request) -> tuple[OpenAIImageRequest, list[dict], dict | None]:
    """The SDK's multipart edit: `image` (or `image[]`, repeated), `mask`, and fields."""
    form = await request.form(max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS)
    files = form.getlist("image") + form.getlist("image[]")
    if not files:
        raise InvalidRequestError("image: give one or more image files", param="image")

    async def ref(upload) -> dict:
        if isinstance(upload, str):
            raise InvalidRequestError("image and mask must be files", param="image")
        return {"b64_json": base64.b64encode(await upload.read()).decode()}

    images = [await ref(f) for f in files]
    mask = await ref(form["mask"]) if "mask" in form else None
    fields = {k: v for k, v in form.multi_items() if k not in ("image", "image[]", "mask")}
    return native_request(OpenAIImageRequest, fields), images, mask


def images_response(view: TaskView, prompt: str, image_tokens: int,
                    ignored: list[str]) -> JSONResponse:
    result = view.result
    b64 = view.request.response_format == "b64_json"
    data = [OpenAIImage(b64_json=d.b64_json) if b64 else OpenAIImage(url=d.url)
            for d in result.data]
    text = text_tokens(prompt)
    usage = OpenAIUsage(input_tokens=text + image_tokens, output_tokens=result.usage.output_tokens,
                        total_tokens=text + image_tokens + result.usage.output_tokens,
                        input_tokens_details=OpenAIInputTokens(text_tokens=text,
                                                               image_tokens=image_tokens))
    answer = OpenAIImagesResponse(created=int(view.created_at), data=data, usage=usage,
                                  size=f"{result.width}x{result.height}",
                                  output_format=view.request.output_format)
    headers = {IGNORED_HEADER: ", ".join(ignored)} if ignored else {}
    return JSONResponse(answer.model_dump(mode="json", exclude_none=True), headers=headers)


app = FastAPI(title="Tessera: OpenAI Images API", version="0.1.0",
              description="OpenAI's images.generate / images.edit / models over Tessera.")
install_error_handlers(app, shape=openai_error)
app.include_router(router)
