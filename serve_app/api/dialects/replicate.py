"""Replicate's HTTP API under /replicate/v1, for `replicate.Client(api_token=KEY,
base_url="https://host:port/replicate")` (or `REPLICATE_BASE_URL`) unchanged.

A prediction is a native task seen through Replicate's view (`wire/replicate.py`): it is
submitted through the one submit path (tenancy, quotas, LoRA, webhooks and the outbound URL
guard apply as they are) and `GET /v1/tasks/{id}` shows it too. Models are named as Replicate's
clients name them: a catalog model by its Hub id (`tessera/tiny-flux`), Replicate's public name
of a catalog model (`black-forest-labs/flux-schnell`, `REPLICATE_NAMES`), or a tenant's
imported model as `<tenant>/<tm_id>`. Errors are RFC 7807 problems, which the client raises
as `ReplicateError`; inputs a model does not take are a 422 naming them.
"""

import hashlib
import json
import time
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from deployments.registry import FAMILIES
from serve_app.api.deps import authenticate, base_url, gateway, request_options
from serve_app.api.dialects import echoed, native_request
from serve_app.api.errors import install_error_handlers
from serve_app.api.gateway import Gateway
from serve_app.api.submit import RequestOptions, new_id
from serve_app.core.errors import (
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    TaskNotCancelableError,
    UnknownModelError,
)
from serve_app.core.keys import UPLOAD_TYPES, upload_key
from serve_app.core.models import ModelRecord, is_tenant_model
from serve_app.core.tasks import Origin
from serve_app.registry.catalog import CATALOG
from serve_app.wire.replicate import API, Prediction, iso, prediction, version_id
from serve_app.wire.schema import EditRequest, GenerationRequest

# Replicate's public names of the catalog's models: what client code written for Replicate asks
# for, served by the catalog model of the same weights
REPLICATE_NAMES = {
    "black-forest-labs/flux-schnell": "black-forest-labs/FLUX.1-schnell",
    "black-forest-labs/flux-dev": "black-forest-labs/FLUX.1-dev",
    "black-forest-labs/flux-dev-lora": "black-forest-labs/FLUX.1-dev",
    "black-forest-labs/flux-krea-dev": "black-forest-labs/FLUX.1-Krea-dev",
    "black-forest-labs/flux-fill-dev": "black-forest-labs/FLUX.1-Fill-dev",
    "black-forest-labs/flux-kontext-dev": "black-forest-labs/FLUX.1-Kontext-dev",
    "black-forest-labs/flux-2-dev": "black-forest-labs/FLUX.2-dev",
    "stability-ai/sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "stability-ai/stable-diffusion-3.5-large": "stabilityai/stable-diffusion-3.5-large",
    "stability-ai/stable-diffusion-3.5-medium": "stabilityai/stable-diffusion-3.5-medium",
    "qwen/qwen-image": "Qwen/Qwen-Image",
    "qwen/qwen-image-edit": "Qwen/Qwen-Image-Edit",
    "prunaai/z-image-turbo": "Tongyi-MAI/Z-Image-Turbo",
}
ASPECT_RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
FORMATS = {"webp": "webp", "jpg": "jpeg", "png": "png"}
FILE_TTL_S = 24 * 3600  # a file sent to /v1/files can be named in predictions for a day
PAGE = 100


class ReplicateInput(BaseModel):
    """The inputs of Replicate's FLUX and SDXL pages. Unknown inputs are refused by name."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    negative_prompt: str | None = None
    aspect_ratio: Literal[ASPECT_RATIOS + ("custom",)] | None = None  # type: ignore[valid-type]
    width: int | None = None
    height: int | None = None
    megapixels: Literal["1", "0.25"] | None = None
    num_outputs: int | None = Field(None, ge=1, le=4)
    num_inference_steps: int | None = None
    guidance: float | None = None
    guidance_scale: float | None = None
    seed: int | None = None
    output_format: Literal["webp", "jpg", "png"] = "webp"
    output_quality: int | None = Field(None, ge=0, le=100, description="accepted; Tessera "
                                       "encodes at its own quality")
    image: str | None = None
    mask: str | None = None
    prompt_strength: float | None = None
    lora_weights: str | None = None
    lora_scale: float | None = None
    disable_safety_checker: bool = False
    # accepted and not used: Tessera runs its own pipeline settings
    go_fast: bool | None = None
    scheduler: str | None = None
    refine: str | None = None
    refine_steps: int | None = None
    high_noise_frac: float | None = None
    apply_watermark: bool | None = None

    def to_native(self, model: ModelRecord, files: str) -> dict[str, Any]:
        """The fields of a native GenerationRequest (or, with an image, EditRequest); a file
        under `files` (what `/v1/files` answered) is the tenant's upload."""
        native: dict[str, Any] = {
            "model": model.id, "prompt": self.prompt, "response_format": "url",
            "output_format": FORMATS[self.output_format],
            **self.model_dump(include={"negative_prompt", "num_inference_steps", "seed"},
                              exclude_none=True)}
        size = self.size(model)
        if size is not None:
            native["width"], native["height"] = size
        if self.num_outputs is not None:
            native["n"] = self.num_outputs
        if self.disable_safety_checker:
            native["safety_checker"] = False
        guidance = self.guidance_scale if self.guidance_scale is not None else self.guidance
        if guidance is not None:
            native["guidance_scale"] = guidance
        if self.lora_weights:
            native["loras"] = [{"path": adapter_path(self.lora_weights),
                                "scale": 1.0 if self.lora_scale is None else self.lora_scale}]
        elif self.lora_scale is not None and model.kind == "lora":
            native["lora_scale"] = self.lora_scale  # a LoRA model's own adapter
        if self.image is not None:
            native["image"] = file_input(self.image, files)
            if self.mask is not None:
                native["mask_image"] = file_input(self.mask, files)
            if self.prompt_strength is not None:
                native["strength"] = self.prompt_strength
        elif self.mask is not None:
            raise InvalidRequestError("mask: give it with image", param="mask")
        return native

    def size(self, model: ModelRecord) -> tuple[int, int] | None:
        """width and height as asked, or an aspect ratio at the model's own area (or the
        megapixels asked for)."""
        if self.aspect_ratio in (None, "custom"):
            if (self.width is None) != (self.height is None):
                raise InvalidRequestError("width and height go together", param="width")
            return None if self.width is None else (self.width, self.height)
        w, h = (int(x) for x in self.aspect_ratio.split(":"))
        p = model.parameters
        area = float(self.megapixels) * 1024 ** 2 if self.megapixels else p.width * p.height
        return (round((area * w / h) ** 0.5 / 16) * 16, round((area * h / w) ** 0.5 / 16) * 16)


def adapter_path(weights: str) -> str:
    """A LoRA as Replicate's pages name it: a Hugging Face repository (`huggingface.co/o/n`, or
    `o/n`) or a URL of a .safetensors file."""
    for prefix in ("https://huggingface.co/", "http://huggingface.co/", "huggingface.co/"):
        if weights.startswith(prefix):
            return weights[len(prefix):]
    return weights


def file_input(value: str, files: str) -> Any:
    """An image input: a URL, a data URI, or one of the tenant's files (uploaded to
    `/v1/files` and named by the URL that answer gave)."""
    if value.startswith(files):
        return {"upload_id": value[len(files):].split("/")[0]}
    return value


class PredictionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(None, description="POST /v1/predictions: owner/name[:version] "
                                "or a version id")
    input: dict[str, Any] = {}
    webhook: str | None = None
    webhook_completed: str | None = None
    webhook_events_filter: list[Literal["start", "output", "logs", "completed"]] | None = None
    stream: bool | None = None


class Version(BaseModel):
    id: str
    created_at: str
    cog_version: str = "0.16.0"
    openapi_schema: dict


class Model(BaseModel):
    url: str
    owner: str
    name: str
    description: str | None = None
    visibility: Literal["public", "private"]
    github_url: str | None = None
    paper_url: str | None = None
    license_url: str | None = None
    run_count: int = 0
    cover_image_url: str | None = None
    default_example: Prediction | None = None
    latest_version: Version | None = None


class Page(BaseModel):
    previous: str | None = None
    next: str | None = None
    results: list


class FileInfo(BaseModel):
    id: str
    name: str
    content_type: str
    size: int
    etag: str
    checksums: dict[str, str]
    metadata: dict[str, Any]
    created_at: str
    expires_at: str | None
    urls: dict[str, str]


class Account(BaseModel):
    type: Literal["user", "organization"] = "organization"
    username: str
    name: str
    github_url: str | None = None


def problem(status: int, code: str, message: str, param: str | None) -> dict:
    """RFC 7807, as Replicate's API answers errors (the client raises ReplicateError)."""
    return {"type": f"https://tessera.dev/errors/{code}", "title": code, "detail": message,
            "status": status}


router = APIRouter(prefix="/v1")


def native_name(name: str, tenant: str) -> str:
    """The model a Replicate name means: `<tenant>/<tm_id>` is the caller's own model, a
    Replicate public name its catalog model; anything else is looked up as a catalog name."""
    owner, _, rest = name.partition("/")
    if owner == tenant:
        if not is_tenant_model(rest):
            raise UnknownModelError(f"model {name!r} not found", param="model")
        return rest
    return REPLICATE_NAMES.get(name, name)


async def predict(gw: Gateway, tenant: str, name: str, body: PredictionRequest,
                  opts: RequestOptions) -> JSONResponse:
    """Submit a prediction of `name` through the one submit path; with `Prefer: wait`, the
    prediction once it ended or, after the wait, as `starting`."""
    model = await gw.resolver.resolve(tenant, native_name(name, tenant))
    inputs = native_request(ReplicateInput, body.input)
    files = f"{opts.base_url}{API}/files/"
    native = inputs.to_native(model, files)
    webhook = body.webhook or body.webhook_completed
    if webhook is not None:
        events = set(body.webhook_events_filter or ["start", "output", "logs", "completed"])
        if body.webhook_completed and not body.webhook:
            events = {"completed"}
        native["webhook"] = webhook
        # no output or logs arrive before the end: both are sent with it
        native["webhook_events_filter"] = sorted({"start" if e == "start" else "completed"
                                                  for e in events})
    origin = Origin(dialect="replicate", model=name, input=echoed(body.input))
    if inputs.image is None:
        submitted = await gw.submitter.generation(
            tenant, native_request(GenerationRequest, native), opts, wait_s=opts.wait_s,
            origin=origin)
    else:
        submitted = await gw.submitter.edit(tenant, native_request(EditRequest, native), opts,
                                            wait_s=opts.wait_s, origin=origin)
    view = await prediction(submitted.task, gw.store, opts.base_url,
                            gw.config.storage.url_ttl_s, waited=opts.wait_s is not None)
    headers = {"Preference-Applied": f"wait={opts.wait_s}"} if opts.wait_s else {}
    return JSONResponse(view.model_dump(mode="json"), status_code=201, headers=headers)


@router.post("/models/{owner}/{name}/predictions", response_model=Prediction, status_code=201)
async def model_predictions(owner: str, name: str, body: PredictionRequest,
                            tenant: str = Depends(authenticate),
                            opts: RequestOptions = Depends(request_options),
                            gw: Gateway = Depends(gateway)):
    return await predict(gw, tenant, f"{owner}/{name}", body, opts)


@router.post("/deployments/{owner}/{name}/predictions", response_model=Prediction,
             status_code=201)
async def deployment_predictions(owner: str, name: str, body: PredictionRequest,
                                 tenant: str = Depends(authenticate),
                                 opts: RequestOptions = Depends(request_options),
                                 gw: Gateway = Depends(gateway)):
    """A deployment is named like the model it serves."""
    return await predict(gw, tenant, f"{owner}/{name}", body, opts)


@router.post("/predictions", response_model=Prediction, status_code=201)
async def version_predictions(body: PredictionRequest, tenant: str = Depends(authenticate),
                              opts: RequestOptions = Depends(request_options),
                              gw: Gateway = Depends(gateway)):
    if not body.version:
        raise InvalidRequestError("version: give the model's version (owner/name:version, "
                                  "owner/name or a version id)", param="version")
    return await predict(gw, tenant, await model_of_version(gw, tenant, body.version), body,
                         opts)


async def model_of_version(gw: Gateway, tenant: str, version: str) -> str:
    """The model name a version names: `owner/name[:id]`, or an id of one of the models the
    tenant can call (each name has one version)."""
    name, _, vid = version.partition(":")
    if "/" in name:
        if vid and vid != version_id(name):
            raise NotFoundError(f"model {name!r} has no version {vid!r}", param="version")
        return name
    names = list(REPLICATE_NAMES) + list(CATALOG) + [
        f"{tenant}/{r.id}" for r, _ in await gw.resolver.models_for(tenant)
        if is_tenant_model(r.id)]
    for candidate in names:
        if version_id(candidate) == version:
            return candidate
    raise NotFoundError(f"no model has the version {version!r}", param="version")


@router.get("/predictions", response_model=Page)
async def list_predictions(cursor: str | None = Query(None), tenant: str = Depends(authenticate),
                           links: str = Depends(base_url), gw: Gateway = Depends(gateway)):
    before = None
    if cursor:
        created, _, task_id = cursor.partition("~")
        try:
            before = (float(created), task_id)
        except ValueError:
            raise InvalidRequestError("cursor: not a cursor this API gave", param="cursor") \
                from None
    tasks = await gw.tasks.list(tenant, None, PAGE + 1, before)
    more, tasks = len(tasks) > PAGE, tasks[:PAGE]
    ttl = gw.config.storage.url_ttl_s
    results = [(await prediction(t, gw.store, links, ttl)).model_dump(mode="json")
               for t in tasks]
    last = tasks[-1] if more else None
    after = f"{links}{API}/predictions?cursor={last.created_at!r}~{last.id}" if last else None
    return Page(results=results, next=after)


@router.get("/predictions/{prediction_id}", response_model=Prediction)
async def get_prediction(prediction_id: str, tenant: str = Depends(authenticate),
                         links: str = Depends(base_url), gw: Gateway = Depends(gateway)):
    task = await gw.tasks.get(prediction_id, tenant)
    return await prediction(task, gw.store, links, gw.config.storage.url_ttl_s)


@router.post("/predictions/{prediction_id}/cancel", response_model=Prediction)
async def cancel_prediction(prediction_id: str, tenant: str = Depends(authenticate),
                            links: str = Depends(base_url), gw: Gateway = Depends(gateway)):
    """Canceled now; one that has already ended is answered as it is, as Replicate does."""
    try:
        task = await gw.tasks.cancel(prediction_id, tenant)
    except TaskNotCancelableError:
        task = await gw.tasks.get(prediction_id, tenant)
    return await prediction(task, gw.store, links, gw.config.storage.url_ttl_s)


@router.get("/models/{owner}/{name}", response_model=Model)
async def get_model(owner: str, name: str, tenant: str = Depends(authenticate),
                    links: str = Depends(base_url), gw: Gateway = Depends(gateway)):
    full = f"{owner}/{name}"
    record = await gw.resolver.resolve(tenant, native_name(full, tenant))
    return Model(url=f"{links}{API}/models/{full}", owner=owner, name=name,
                 description=record.name, latest_version=version_of(full, record),
                 visibility="private" if is_tenant_model(record.id) else "public")


@router.get("/models/{owner}/{name}/versions", response_model=Page)
async def list_versions(owner: str, name: str, tenant: str = Depends(authenticate),
                        gw: Gateway = Depends(gateway)):
    full = f"{owner}/{name}"
    record = await gw.resolver.resolve(tenant, native_name(full, tenant))
    return Page(results=[version_of(full, record).model_dump()])


@router.get("/models/{owner}/{name}/versions/{version}", response_model=Version)
async def get_version(owner: str, name: str, version: str, tenant: str = Depends(authenticate),
                      gw: Gateway = Depends(gateway)):
    full = f"{owner}/{name}"
    record = await gw.resolver.resolve(tenant, native_name(full, tenant))
    if version != version_id(full):
        raise NotFoundError(f"model {full!r} has no version {version!r}", param="version")
    return version_of(full, record)


def version_of(name: str, record: ModelRecord) -> Version:
    """The model's one version, whose schema's `Input` is the model's own parameters."""
    return Version(id=version_id(name), created_at=iso(record.created_at or 0.0),
                   openapi_schema=openapi_schema(record))


def openapi_schema(record: ModelRecord) -> dict:
    p, spec = record.parameters, FAMILIES[record.family]
    sides = {"type": "integer", "minimum": p.min_side, "maximum": p.max_side}
    props: dict[str, dict] = {
        "prompt": {"type": "string", "title": "Prompt", "x-order": 0},
        "aspect_ratio": {"type": "string", "enum": [*ASPECT_RATIOS, "custom"], "default": "1:1"},
        "width": {**sides, "default": p.width}, "height": {**sides, "default": p.height},
        "num_outputs": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
        "num_inference_steps": {"type": "integer", "minimum": p.min_steps,
                                "maximum": p.max_steps, "default": p.num_inference_steps},
        "seed": {"type": "integer", "description": "random when omitted"},
        "output_format": {"type": "string", "enum": list(FORMATS), "default": "webp"},
        "output_quality": {"type": "integer", "minimum": 0, "maximum": 100, "default": 80},
        "disable_safety_checker": {"type": "boolean", "default": False}}
    if p.guidance_scale is not None:
        props["guidance"] = {"type": "number", "minimum": 0, "maximum": p.max_guidance_scale,
                             "default": p.guidance_scale}
    if p.negative_prompt:
        props["negative_prompt"] = {"type": "string"}
    if set(spec.tasks) - {"text-to-image"}:
        props["image"] = {"type": "string", "format": "uri"}
        props["prompt_strength"] = {"type": "number", "minimum": 0, "maximum": 1,
                                    "default": p.strength}
    if "inpaint" in spec.tasks:
        props["mask"] = {"type": "string", "format": "uri"}
    if spec.takes_loras:
        props["lora_weights"] = {"type": "string"}
        props["lora_scale"] = {"type": "number", "minimum": -2, "maximum": 2, "default": 1}
    required = ["prompt"] + (["image"] if "text-to-image" not in spec.tasks else [])
    output = {"type": "array", "items": {"type": "string", "format": "uri"}}
    return {"openapi": "3.0.2", "info": {"title": record.hf_model_id, "version": "1"},
            "paths": {}, "components": {"schemas": {
                "Input": {"type": "object", "title": "Input", "required": required,
                          "properties": props},
                "Output": {"title": "Output", **output}}}}


@router.get("/account", response_model=Account)
async def account(tenant: str = Depends(authenticate)):
    """The caller: `username` is the owner of its imported models' names."""
    return Account(username=tenant, name=tenant)


@router.post("/files", response_model=FileInfo, status_code=201)
async def create_file(content: UploadFile = File(...), metadata: str | None = Form(None),
                      tenant: str = Depends(authenticate), links: str = Depends(base_url),
                      gw: Gateway = Depends(gateway)):
    """A file an input can name by its `urls.get` (what the client does for a local file)."""
    kind = content.content_type or ""
    if kind not in UPLOAD_TYPES:
        raise InvalidRequestError(f"content: {kind or 'this type'} is not an image this server "
                                  f"takes ({', '.join(sorted(UPLOAD_TYPES))})", param="content")
    cap = gw.config.storage.max_upload_bytes
    data = await content.read(cap + 1)
    if len(data) > cap:
        raise PayloadTooLargeError(f"files are limited to {cap} bytes", param="content")
    try:
        meta = json.loads(metadata) if metadata else {}
    except ValueError:
        raise InvalidRequestError("metadata: not JSON", param="metadata") from None
    file_id, now = new_id("upl"), time.time()
    details = {"metadata": meta, "checksums": {"sha256": hashlib.sha256(data).hexdigest(),
                                               "md5": hashlib.md5(data).hexdigest()}}
    key = upload_key(tenant, file_id, kind)
    await gw.models.add_upload(tenant, file_id, key, kind, now + FILE_TTL_S, len(data),
                               content.filename or "file", details)  # 429 past the quota
    await gw.store.put_async(key, data, kind)
    return file_info(await gw.models.find_file(tenant, file_id), links)


@router.get("/files/{file_id}", response_model=FileInfo)
async def get_file(file_id: str, tenant: str = Depends(authenticate),
                   links: str = Depends(base_url), gw: Gateway = Depends(gateway)):
    return file_info(await found_file(gw, tenant, file_id), links)


@router.get("/files/{file_id}/download")
async def download_file(file_id: str, tenant: str = Depends(authenticate),
                        gw: Gateway = Depends(gateway)):
    row = await found_file(gw, tenant, file_id)
    return Response(await gw.store.get_async(row["key"]), media_type=row["content_type"])


@router.delete("/files/{file_id}", status_code=204)
async def delete_file(file_id: str, tenant: str = Depends(authenticate),
                      gw: Gateway = Depends(gateway)):
    row = await found_file(gw, tenant, file_id)
    await gw.store.delete_async([row["key"]])
    await gw.models.delete_upload(tenant, file_id)
    return Response(status_code=204)


async def found_file(gw: Gateway, tenant: str, file_id: str) -> dict:
    row = await gw.models.find_file(tenant, file_id)
    if row is None or row["name"] is None:  # another tenant's, or an upload link's
        raise NotFoundError(f"no file {file_id!r}", param="file_id")
    return row


def file_info(row: dict, links: str) -> FileInfo:
    details = row["details"] or {}
    return FileInfo(id=row["id"], name=row["name"], content_type=row["content_type"],
                    size=row["size"], etag=details.get("checksums", {}).get("md5", ""),
                    checksums=details.get("checksums", {}),
                    metadata=details.get("metadata", {}), created_at=iso(row["created_at"]),
                    expires_at=iso(row["expires_at"]),
                    urls={"get": f"{links}{API}/files/{row['id']}"})


@router.get("/webhooks/default/secret")
async def webhook_secret(tenant: str = Depends(authenticate), gw: Gateway = Depends(gateway)):
    """The secret that verifies this tenant's webhooks (Standard Webhooks)."""
    return {"key": await gw.tasks.webhook_secret(tenant)}


app = FastAPI(title="Tessera: Replicate's API", version="0.1.0",
              description="Replicate's predictions, models, files and account over Tessera.")
# Replicate answers a body it cannot use with 422, naming the field
install_error_handlers(app, shape=problem, statuses={400: 422})
app.include_router(router)
