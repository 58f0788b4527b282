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
    # Reads the disk and maybe the Hub, and may build a tiny checkpoint: not on the loop.
    result = await asyncio.to_thread(validate, body.hf_model_id, gw.config, new_id("val"))
    await gw.models.add_validation(tenant, result)
    # where the weights are is the server's business: a local directory is named as given
    local = result.source is not None and result.source.startswith("/")
    return result.model_copy(update={"source": body.hf_model_id}) if local else result


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
