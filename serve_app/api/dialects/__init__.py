"""Compatibility dialects: each a thin adapter that turns its clients' requests into Tessera's
own and submits them through `Gateway.submit_generation` / `submit_edit`."""

from pydantic import BaseModel, ValidationError

from serve_app.core.errors import InvalidRequestError, _loc_to_param


def native_request(cls: type[BaseModel], data: dict) -> BaseModel:
    """A Tessera request from a dialect's fields; invalid ones are a 400 naming the field."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _loc_to_param(first.get("loc", ()))
        message = first.get("msg", "invalid request")
        raise InvalidRequestError(f"{param}: {message}" if param else message,
                                  param=param) from None
