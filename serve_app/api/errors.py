"""Typed errors to HTTP responses, in one place for the whole API: every `TesseraError` and
every validation or routing failure answers in the one error shape (a dialect passes its own
`shape`), and anything unexpected is a logged 500 that leaks nothing."""

import logging

from serve_app.core.errors import TesseraError, loc_to_param, native_error

logger = logging.getLogger("tessera.errors")


def install_error_handlers(app, shape=native_error, statuses: dict[int, int] | None = None
                           ) -> None:
    """Typed errors to responses, in one place; a compatibility dialect passes its own
    `shape(status, code, message, param)`, and the status codes its clients expect in place of
    Tessera's (`statuses`: Replicate answers an unusable input with 422, fal's client retries a
    409)."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    renumber = statuses or {}

    def respond(status: int, code: str, message: str, param: str | None,
                headers: dict | None = None):
        status = renumber.get(status, status)
        return JSONResponse(shape(status, code, message, param), status_code=status,
                            headers=headers)

    @app.exception_handler(TesseraError)
    async def _tessera(_: Request, exc: TesseraError):
        return respond(exc.status_code, exc.code, exc.message, exc.param, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        param = loc_to_param(first.get("loc", ()))
        message = first.get("msg", "invalid request")
        if param:
            message = f"{param}: {message}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem(s))"
        return respond(400, "invalid_request", message, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        codes = {404: "not_found", 405: "method_not_allowed", 401: "invalid_api_key"}
        code = codes.get(exc.status_code, "http_error")
        return respond(exc.status_code, code, str(exc.detail), None,
                       getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        logger.exception("unhandled error")
        return respond(500, "internal_error", "internal server error", None)
