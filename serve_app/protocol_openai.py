"""The OpenAI Images API's schema (what the OpenAI SDK sends and reads): data only.

Requests turn themselves into Tessera's own requests (`to_native`), so the dialect adds no
logic of its own: every field the SDK can send is accepted; Tessera's parameters ride in
`extra_body`; the rest is listed as ignored.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Tessera parameters a client passes with the SDK's `extra_body`
EXTRA = ("negative_prompt", "seed", "num_inference_steps", "guidance_scale", "cancel_after",
         "webhook", "webhook_events_filter")
# OpenAI's images parameters that Tessera accepts and does not use
OPENAI_UNUSED = frozenset({"background", "input_fidelity", "moderation", "output_compression",
                           "partial_images", "quality", "stream", "style", "user"})


class OpenAIImageRequest(BaseModel):
    # The SDK's fields grow with OpenAI's models: accept them all, list what is not used.
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    prompt: str
    n: int | None = None
    size: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    output_format: str | None = None

    def ignored(self) -> list[str]:
        """What the answer's Tessera-Ignored-Parameters header lists: OpenAI's own parameter
        names that Tessera does not use, and only a count of any other keys (a response header
        is never built from the client's text)."""
        unused = {k for k, v in (self.model_extra or {}).items()
                  if k not in EXTRA and k != "strength" and v is not None}
        known = sorted(unused & OPENAI_UNUSED)
        others = len(unused - OPENAI_UNUSED)
        return known + ([f"{others} unrecognised"] if others else [])

    def to_native(self, default_model: str, extra: tuple[str, ...] = EXTRA) -> dict[str, Any]:
        """The fields of a Tessera GenerationRequest / EditRequest."""
        native: dict[str, Any] = {"model": self.model or default_model, "prompt": self.prompt}
        if self.n is not None:
            native["n"] = self.n
        if self.size and self.size != "auto":
            native["size"] = self.size
        if self.response_format:
            native["response_format"] = self.response_format
        if self.output_format:
            native["output_format"] = self.output_format
        native.update({k: v for k, v in (self.model_extra or {}).items()
                       if k in extra and v is not None})
        return native


class OpenAIImage(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class OpenAIInputTokens(BaseModel):
    text_tokens: int
    image_tokens: int


class OpenAIUsage(BaseModel):
    input_tokens: int
    input_tokens_details: OpenAIInputTokens
    output_tokens: int
    total_tokens: int


class OpenAIImagesResponse(BaseModel):
    created: int
    data: list[OpenAIImage]
    usage: OpenAIUsage
    size: str | None = None
    output_format: str | None = None


def text_tokens(prompt: str) -> int:
    """Roughly what a BPE tokenizer counts: four characters a token."""
    return max(1, math.ceil(len(prompt) / 4))


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel] = Field(default_factory=list)


ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "invalid_request_error",
               409: "invalid_request_error", 413: "invalid_request_error",
               422: "invalid_request_error", 429: "rate_limit_error"}


def openai_error(status: int, code: str, message: str, param: str | None) -> dict:
    """OpenAI's error shape; the status codes are Tessera's, which the SDK maps to its
    exception classes (400 BadRequestError, 401 AuthenticationError, 404 NotFoundError, ...)."""
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"),
                      "param": param, "code": code}}
