"""Typed errors to HTTP responses, in one place for the whole API: every `TesseraError` and
every validation or routing failure answers in the one error shape (a dialect passes its own
`shape`), and anything unexpected is a logged 500 that leaks nothing."""

import logging

from serve_app.core.errors import TesseraError, loc_to_param, native_error

logger = logging.getLogger("tessera.errors")


def install_error_handlers(app, shape=native_error) -> None:
    """Typed errors to responses, in one place; a compatibility dialect passes its own
    `shape(status, code, message, param)`."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(TesseraError)
    async def _tessera(_: Request, exc: TesseraError):
        return JSONResponse(shape(exc.status_code, exc.code, exc.message, exc.param),
                            status_code=exc.status_code, headers=exc.headers)

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
        return JSONResponse(shape(400, "invalid_request", message, param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        codes = {404: "not_found", 405: "method_not_allowed", 401: "invalid_api_key"}
        code = codes.get(exc.status_code, "http_error")
        return JSONResponse(shape(exc.status_code, code, str(exc.detail), None),
                            status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        logger.exception("unhandled error")
        return JSONResponse(shape(500, "internal_error", "internal server error", None),
                            status_code=500)
