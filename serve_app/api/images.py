"""Images: generations and edits, each validate -> submit -> 202 with the task id."""

from fastapi import APIRouter, Depends, Request

from serve_app.api.deps import authenticate, gateway
from serve_app.api.gateway import Gateway
from serve_app.core.errors import InvalidRequestError, UnsupportedTaskError
from serve_app.protocol import EditRequest, GenerationRequest, TaskCreated, TaskView
from serve_app.rules import route_edit

router = APIRouter()

# With `Prefer: wait=N` the answer is the task view: 200 once it ended within N s, else 202.
WAITED = {200: {"model": TaskView, "description": "Prefer: wait, and the task ended in time"}}


@router.post("/v1/images/generations", response_model=TaskCreated, status_code=202,
             responses=WAITED)
async def generations(body: GenerationRequest, request: Request,
                      tenant: str = Depends(authenticate), gw: Gateway = Depends(gateway)):
    model, source = await gw.imported_model(tenant, body.model)
    if "text-to-image" not in model.tasks:
        raise UnsupportedTaskError(f"{model.id} edits images: call /v1/images/edits",
                                   param="model")
    params, warnings = body.to_generate_params(model.parameters)
    options = await gw.options(body, request)
    task_id, now = gw.created_now()
    created = await gw.submit(tenant, model, source, task_id, now, params, body.n,
                              body.response_format, warnings, options, str(request.base_url))
    return await gw.answer(created, tenant, request)


@router.post("/v1/images/edits", response_model=TaskCreated, status_code=202,
             responses=WAITED)
async def edits(body: EditRequest, request: Request, tenant: str = Depends(authenticate),
                gw: Gateway = Depends(gateway)):
    model, source = await gw.imported_model(tenant, body.model)
    task = route_edit(model.tasks, body.mask_image is not None, model.id)
    if len(body.images) > model.parameters.max_input_images:
        raise InvalidRequestError(f"{model.id} takes at most "
                                  f"{model.parameters.max_input_images} input image(s)",
                                  param="image")
    images = [await gw.load_image(tenant, ref, "image") for ref in body.images]
    mask = (await gw.load_image(tenant, body.mask_image, "mask_image", "L")
            if body.mask_image is not None else None)
    params, warnings = body.to_generate_params(model.parameters, task, images[0].size)
    options = await gw.options(body, request)
    task_id, now = gw.created_now()
    keys, mask_key = await gw.store_inputs(tenant, task_id, images, mask,
                                           (params.width, params.height), warnings)
    params = params.model_copy(update={"image_keys": keys, "mask_key": mask_key})
    created = await gw.submit(tenant, model, source, task_id, now, params, body.n,
                              body.response_format, warnings, options, str(request.base_url))
    return await gw.answer(created, tenant, request)
