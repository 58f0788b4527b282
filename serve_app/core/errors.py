"""One error vocabulary for the whole service.

Everything below the routes raises a `TesseraError` subclass; the API layer
(`serve_app/api/errors.py`) is the one place that turns them (and FastAPI's own validation and
routing errors) into `{"error": {"code", "message", "param"}}`.
"""

from __future__ import annotations

from typing import Any


class TesseraError(Exception):
    status_code = 400
    code = "invalid_request"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "param": self.param}}

    # Ray re-raises remote exceptions by pickling them; keep every field through the round trip.
    def __reduce__(self):
        return (_rebuild, (type(self), self.message, self.param, self.code, self.headers))


def _rebuild(cls, message, param, code, headers):
    return cls(message, param=param, code=code, headers=headers)


class InvalidRequestError(TesseraError):
    status_code = 400
    code = "invalid_request"


class AuthenticationError(TesseraError):
    status_code = 401
    code = "invalid_api_key"


class NotFoundError(TesseraError):
    status_code = 404
    code = "not_found"


class UnknownModelError(NotFoundError):
    code = "model_not_found"


class UnknownValidationError(NotFoundError):
    code = "validation_not_found"


class TaskNotFoundError(NotFoundError):
    code = "task_not_found"


class UnknownUploadError(NotFoundError):
    code = "upload_not_found"


class ExpiredError(NotFoundError):
    code = "expired"


class LicenseNotAcceptedError(TesseraError):
    status_code = 400
    code = "license_acceptance_required"


class LicenseAcceptanceRequiredError(TesseraError):
    """A catalog model called by name whose licence the operator has not accepted."""

    status_code = 403
    code = "license_acceptance_required"


class UnsupportedModelError(TesseraError):
    status_code = 400
    code = "model_not_supported"


class UnsupportedTaskError(TesseraError):
    """The model exists but cannot do what was asked (e.g. an edit-only model on /generations)."""
    status_code = 400
    code = "unsupported_task"


class PayloadTooLargeError(TesseraError):
    status_code = 413
    code = "payload_too_large"


class RateLimitedError(TesseraError):
    status_code = 429
    code = "rate_limited"


class QueueFullError(TesseraError):
    status_code = 429
    code = "queue_full"


class ServiceUnavailableError(TesseraError):
    status_code = 503
    code = "service_unavailable"


class TaskFailedError(TesseraError):
    """A synchronous dialect's task ended without images."""

    status_code = 500
    code = "generation_failed"


class GatewayTimeoutError(TesseraError):
    status_code = 504
    code = "timeout"


class StorageUnavailableError(ServiceUnavailableError):
    code = "storage_unavailable"


class InvalidSignatureError(TesseraError):
    status_code = 403
    code = "invalid_signature"


class ImageFetchError(TesseraError):
    status_code = 400
    code = "image_fetch_failed"


class ForbiddenURLError(TesseraError):
    status_code = 400
    code = "image_url_not_allowed"


class TaskNotCancelableError(TesseraError):
    status_code = 409
    code = "task_not_cancelable"


class UploadUsedError(TesseraError):
    status_code = 409
    code = "upload_used"


class LoraUnsupportedFormatError(TesseraError):
    """Not a safetensors file (a pickle, a zip of one, anything else): never unpickled."""
    status_code = 400
    code = "lora_unsupported_format"


class LoraInvalidError(TesseraError):
    """A safetensors file that cannot be an adapter: unreadable, truncated, non-finite, not
    floating point, no LoRA tensors, past the tensor-count or rank caps."""
    status_code = 400
    code = "lora_invalid"


class LoraIncompatibleError(TesseraError):
    """An adapter whose keys or shapes do not fit the model's base, or a model that takes no
    adapters at all."""
    status_code = 400
    code = "lora_incompatible"


class LoraUnreachableError(TesseraError):
    """An adapter that could not be fetched: a URL that failed or is not allowed, a Hub file
    that is not cached while the Hub cannot be reached."""
    status_code = 400
    code = "lora_unreachable"


class ControlNetIncompatibleError(TesseraError):
    """A ControlNet of another family than the model's (or a tiny one on a real model)."""
    status_code = 400
    code = "controlnet_incompatible"


class ControlNetUnreachableError(TesseraError):
    """A ControlNet that could not be found: not a ControlNet repository, not cached while the
    Hub cannot be asked, or weights that are not safetensors."""
    status_code = 400
    code = "controlnet_unreachable"


class IdempotencyKeyReusedError(TesseraError):
    status_code = 422
    code = "idempotency_key_reused"


class WebhookURLError(TesseraError):
    status_code = 400
    code = "webhook_url_not_allowed"


class TaskCanceled(Exception):
    """Raised inside a pipeline call (from its step callback) once every task in it was
    cancelled: the call stops between two denoising steps."""


class InvalidTransitionError(Exception):
    """A task state change the state machine does not allow (a bug, never a client error)."""


def loc_to_param(loc: tuple | list) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def native_error(status: int, code: str, message: str, param: str | None) -> dict:
    """Tessera's one error shape."""
    return {"error": {"code": code, "message": message, "param": param}}


def unwrap_remote_error(exc: BaseException) -> BaseException:
    """Ray wraps an exception raised in another process; the original (with its fields) is its
    `.cause`. The one place that unwraps them."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc
