"""imagepipeline.io's generate v3 schema (`POST /generate/v3`, `GET /generate/v3/status/{id}`):
data only."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FILE_PREFIX = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ImagePipelineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str
    negative_prompt: str | None = None
    num_inference_steps: int | None = None
    samples: int = Field(2, ge=1, le=4)
    width: int = Field(1024, le=1536)
    height: int = Field(1024, le=1536)
    seed: int = -1
    webhook: str | None = None
    batch_id: str | None = Field(None, max_length=128)
    file_prefix: str | None = Field(None, pattern=FILE_PREFIX)
    queued_image_urls: bool = False
    direct_link: bool = False  # our links are direct already
    server_id: str | None = None  # one Tessera is one "server": accepted, not used
    model: str | None = Field(None, description="Tessera's addition: default compat.default_model")

    def to_native(self, default_model: str) -> dict[str, Any]:
        return {"model": self.model or default_model, "prompt": self.prompt,
                "negative_prompt": self.negative_prompt,
                "num_inference_steps": self.num_inference_steps, "n": self.samples,
                "width": self.width, "height": self.height,
                "seed": None if self.seed == -1 else self.seed, "webhook": self.webhook}


class ImagePipelineAnswer(BaseModel):
    status: Literal["PENDING", "SUCCESS", "FAILURE"]
    id: str
    download_urls: list[str] = []
    batch_id: str | None = None
    error: str | None = None
