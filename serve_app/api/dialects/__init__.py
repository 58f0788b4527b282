"""Compatibility dialects: each a thin adapter that turns its clients' requests into Tessera's
own and submits them through `Gateway.submit_generation` / `submit_edit`."""

import base64
from typing import Any

from pydantic import BaseModel, ValidationError

from serve_app.core.errors import InvalidRequestError, loc_to_param

# A form body's parts are capped beside its total size (limits.max_body_bytes): a few files
# (input images and a mask), a few dozen fields.
MAX_FORM_FILES, MAX_FORM_FIELDS = 16, 64


def native_request(cls: type[BaseModel], data: dict) -> BaseModel:
    """A Tessera request from a dialect's fields; invalid ones are a 400 naming the field."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = loc_to_param(first.get("loc", ()))
        message = first.get("msg", "invalid request")
        raise InvalidRequestError(f"{param}: {message}" if param else message,
                                  param=param) from None


async def request_fields(request) -> dict:
    """A body's fields, JSON or form-encoded (`curl -F name=value`)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form(max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS)
        fields = {}
        for key, value in form.multi_items():
            if not isinstance(value, str):  # a file field: its bytes as a data URI
                data = base64.b64encode(await value.read()).decode()
                value = f"data:{value.content_type or 'application/octet-stream'};base64,{data}"
            fields[key] = value
        return fields
    try:
        fields = await request.json()
    except ValueError:
        raise InvalidRequestError("the body must be a JSON object or form fields") from None
    if not isinstance(fields, dict):
        raise InvalidRequestError("the body must be a JSON object or form fields")
    return fields


def echoed(inputs: dict[str, Any]) -> dict[str, Any]:
    """The input as a prediction echoes it, without the bytes of inline files: a data URI is
    kept as its first characters (the stored task is no place for the image)."""
    return {k: f"{v[:48]}…" if isinstance(v, str) and v.startswith("data:") and len(v) > 64
            else v for k, v in inputs.items()}
