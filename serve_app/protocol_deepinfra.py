"""DeepInfra's inference API schema (`POST /v1/inference/{model}`): data only.

A request turns itself into Tessera's own generation (or, with `image`, edit) fields; the
answer carries the images inline as data URIs, as DeepInfra's does.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DeepInfraRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str
    negative_prompt: str | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    strength: float | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    num_images: int | None = None
    webhook: str | None = None
    image: str | None = Field(None, description="image-to-image: a data URI, base64 or a URL")

    def to_native(self, model: str) -> dict[str, Any]:
        native: dict[str, Any] = {
            "model": model, "prompt": self.prompt, "response_format": "b64_json",
            **self.model_dump(include={"negative_prompt", "num_inference_steps",
                                       "guidance_scale", "seed", "webhook"},
                              exclude_none=True)}
        if self.width is not None or self.height is not None:  # one side: a square
            native["width"] = self.width or self.height
            native["height"] = self.height or self.width
        if self.num_images is not None:
            native["n"] = self.num_images
        if self.image is not None:
            native["image"] = self.image
            if self.strength is not None:
                native["strength"] = self.strength
        return native


class InferenceStatus(BaseModel):
    status: str
    runtime_ms: float
    cost: float
    tokens_generated: int = 0
    tokens_input: int = 0


class DeepInfraResponse(BaseModel):
    images: list[str]
    # no safety checker runs yet: null per image means unchecked, not "safe"
    nsfw_content_detected: list[bool | None]
    seed: int
    request_id: str | None
    inference_status: InferenceStatus
