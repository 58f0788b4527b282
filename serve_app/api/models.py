"""Models: validate a checkpoint, import it, list what can be called."""

import asyncio

from fastapi import APIRouter, Depends, Query

from serve_app.api.deps import authenticate, gateway
from serve_app.api.dialects.parel import ParelImportedModel, import_answer
from serve_app.api.gateway import Gateway
from serve_app.api.submit import new_id
from serve_app.protocol import (
    ImportRequest,
    ModelList,
    ValidateRequest,
    ValidateResponse,
)
from serve_app.validation import validate

router = APIRouter()

# "image-to-image" lists everything that edits: img2img, inpainting, instruction edits
EDIT_TASKS = {"image-to-image", "inpaint", "edit"}


@router.post("/v1/my-models/validate-hf", response_model=ValidateResponse)
async def validate_hf(body: ValidateRequest, tenant: str = Depends(authenticate),
                      gw: Gateway = Depends(gateway)):
    await gw.models.admit_validation(tenant)  # 429 past the hourly quota
    tenant_base = None
    if body.base_model and body.base_model.startswith("tm_"):  # the tenant's own model
        record = await gw.resolver.imported(tenant, body.base_model, param="base_model")
        tenant_base = (record.info, record.source)
    # Reads the disk and maybe the Hub, and may build a tiny checkpoint: not on the loop.
    result = await asyncio.to_thread(validate, body.hf_model_id, gw.config, new_id("val"),
                                     body.base_model, tenant_base)
    await gw.models.add_validation(tenant, result)
    return hide_local_paths(result, body)


def hide_local_paths(result: ValidateResponse, body: ValidateRequest) -> ValidateResponse:
    """Where the weights are is the server's business: local paths are named as given."""
    hidden = {}
    if result.source is not None and result.source.startswith("/"):
        hidden["source"] = body.base_model if result.kind == "lora" else body.hf_model_id
    if result.adapter_source is not None and result.adapter_source.startswith("/"):
        hidden["adapter_source"] = body.hf_model_id
    return result.model_copy(update=hidden)


@router.post("/v1/my-models/import-hf", response_model=ParelImportedModel, status_code=201)
async def import_hf(body: ImportRequest, tenant: str = Depends(authenticate),
                    gw: Gateway = Depends(gateway)):
    info = await gw.models.import_model(tenant, body.validation_id, body.accepted_license,
                                        body.execution_mode, body.name)
    return import_answer(info)


@router.get("/v1/models", response_model=ModelList)
async def list_models(task: str | None = Query(None), tenant: str = Depends(authenticate),
                      gw: Gateway = Depends(gateway)):
    wanted = EDIT_TASKS if task == "image-to-image" else {task}
    return ModelList(data=[m for m in await gw.resolver.models_for(tenant)
                           if task is None or wanted & set(m.tasks)])
