"""Hyperstack AI Studio's schema where it differs from Tessera's own: data only. (Its image
requests and task views are Tessera's native ones, which accept its `image_size`,
`num_images` and top-level `image_url`, and answer its `job_id`, `result.created` and
`usage.total_tokens`.)"""

from __future__ import annotations

from pydantic import BaseModel


class BaseModelName(BaseModel):
    model_name: str


class BaseModelsAnswer(BaseModel):
    models: list[BaseModelName]
