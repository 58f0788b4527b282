"""The OpenAI Images API under /openai/v1, for `OpenAI(base_url=".../openai/v1", api_key=KEY)`.

`images.generate` and `images.edit` submit through the one submit path and wait for the task
(synchronous, as the SDK expects); `models.list` and `models.retrieve` read the same models as
/v1/models. Errors come in OpenAI's shape with the status codes the SDK maps to its exceptions.
Parameters the SDK sends that Tessera does not use are listed in `Tessera-Ignored-Parameters`.
"""

import base64

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from serve_app.api.deps import authenticate, gateway
from serve_app.api.dialects import MAX_FORM_FIELDS, MAX_FORM_FILES, native_request
from serve_app.api.gateway import Gateway
from serve_app.core.errors import InvalidRequestError, install_error_handlers
from serve_app.protocol import EditRequest, GenerationRequest, TaskView
from serve_app.protocol_openai import (
    EXTRA,
    OpenAIImage,
    OpenAIImageRequest,
    OpenAIImagesResponse,
    OpenAIInputTokens,
    OpenAIModel,
    OpenAIModelList,
    OpenAIUsage,
    openai_error,
    text_tokens,
)

router = APIRouter(prefix="/v1")
IGNORED_HEADER = "Tessera-Ignored-Parameters"


@router.post("/images/generations", response_model=OpenAIImagesResponse)
async def generations(body: OpenAIImageRequest, request: Request,
                      tenant: str = Depends(authenticate), gw: Gateway = Depends(gateway)):
    native = native_request(GenerationRequest, body.to_native(gw.config.compat.default_model))
    submitted = await gw.submit_generation(tenant, native, request, wait_s=gw.sync_wait_s)
    view = await gw.finished(submitted, tenant, gw.base_url_for(request))
    return images_response(view, native.prompt, 0, body.ignored())


@router.post("/images/edits", response_model=OpenAIImagesResponse)
async def edits(request: Request, tenant: str = Depends(authenticate),
                gw: Gateway = Depends(gateway)):
    body, images, mask = await read_edit_form(request)
    fields = body.to_native(gw.config.compat.default_model, EXTRA + ("strength",))
    native = native_request(EditRequest, {**fields, "image": images, "mask_image": mask})
    submitted = await gw.submit_edit(tenant, native, request, wait_s=gw.sync_wait_s)
    view = await gw.finished(submitted, tenant, gw.base_url_for(request))
    image_tokens = len(images) * (view.request.get("width", 0) // 16) * (
        view.request.get("height", 0) // 16)
    return images_response(view, native.prompt, image_tokens, body.ignored())


@router.get("/models", response_model=OpenAIModelList)
async def list_models(tenant: str = Depends(authenticate), gw: Gateway = Depends(gateway)):
    models = await gw.models_for(tenant)
    return OpenAIModelList(data=[openai_model(m) for m in models if m.available])


@router.get("/models/{model_id:path}", response_model=OpenAIModel)
async def retrieve_model(model_id: str, tenant: str = Depends(authenticate),
                         gw: Gateway = Depends(gateway)):
    info, _ = await gw.imported_model(tenant, model_id)
    return openai_model(info)


def openai_model(info) -> OpenAIModel:
    return OpenAIModel(id=info.id, created=int(info.created_at or 0), owned_by=info.owned_by)


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
    b64 = view.request.get("response_format") == "b64_json"
    data = [OpenAIImage(b64_json=d.b64_json) if b64 else OpenAIImage(url=d.url)
            for d in result.data]
    text = text_tokens(prompt)
    usage = OpenAIUsage(input_tokens=text + image_tokens, output_tokens=result.usage.output_tokens,
                        total_tokens=text + image_tokens + result.usage.output_tokens,
                        input_tokens_details=OpenAIInputTokens(text_tokens=text,
                                                               image_tokens=image_tokens))
    answer = OpenAIImagesResponse(created=int(view.created_at), data=data, usage=usage,
                                  size=f"{result.width}x{result.height}",
                                  output_format=view.request.get("output_format"))
    headers = {IGNORED_HEADER: ", ".join(ignored)} if ignored else {}
    return JSONResponse(answer.model_dump(mode="json", exclude_none=True), headers=headers)


app = FastAPI(title="Tessera: OpenAI Images API", version="0.1.0",
              description="OpenAI's images.generate / images.edit / models over Tessera.")
install_error_handlers(app, shape=openai_error)
app.include_router(router)
