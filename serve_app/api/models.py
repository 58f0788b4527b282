"""Models: validate a checkpoint, import it, list what can be called."""

from fastapi import APIRouter, Depends, Query

from serve_app.api.deps import authenticate, gateway
from serve_app.api.dialects.parel import ParelImportedModel, import_answer
from serve_app.api.gateway import Gateway
from serve_app.api.submit import new_id
from serve_app.wire.schema import ImportRequest, ModelList, ValidateRequest, ValidateResponse
from serve_app.wire.views import model_info, validation_view

router = APIRouter()

# "image-to-image" lists everything that edits: img2img, inpainting, instruction edits
EDIT_TASKS = {"image-to-image", "inpaint", "edit"}


@router.post("/v1/my-models/validate-hf", response_model=ValidateResponse)
async def validate_hf(body: ValidateRequest, tenant: str = Depends(authenticate),
                      gw: Gateway = Depends(gateway)):
    # in the model registry: it reads checkpoints, may fetch and may build a tiny one
    validation = await gw.models.validate(tenant, body.hf_model_id, new_id("val"),
                                          body.base_model)
    return validation_view(validation)


@router.post("/v1/my-models/import-hf", response_model=ParelImportedModel, status_code=201)
async def import_hf(body: ImportRequest, tenant: str = Depends(authenticate),
                    gw: Gateway = Depends(gateway)):
    record = await gw.models.import_model(tenant, body.validation_id, body.accepted_license,
                                          body.execution_mode, body.name)
    return import_answer(model_info(record))


@router.get("/v1/models", response_model=ModelList)
async def list_models(task: str | None = Query(None), tenant: str = Depends(authenticate),
                      gw: Gateway = Depends(gateway)):
    wanted = EDIT_TASKS if task == "image-to-image" else {task}
    models = [model_info(record, reason) for record, reason in
              await gw.resolver.models_for(tenant)]
    return ModelList(data=[m for m in models if task is None or wanted & set(m.tasks)])
