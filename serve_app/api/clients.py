"""Typed clients of the two actors the API talks to: the only place the API calls `.remote(`.

Each method awaits its call through `call`: our own errors come back as themselves (not
wrapped by Ray), and an actor that is restarting or gone is a 503 with Retry-After, never a 500.
"""

from __future__ import annotations

import asyncio
from typing import Any

from serve_app.core.errors import ServiceUnavailableError, TesseraError, unwrap_remote_error
from serve_app.core.models import ModelRecord, Validation
from serve_app.core.tasks import Task

# Ray retries a call that meets a restarting actor; past this, the client gets a 503 and retries
ACTOR_WAIT_S = 20.0
VALIDATE_WAIT_S = 300.0


async def call(ref, timeout_s: float = ACTOR_WAIT_S) -> Any:
    from ray.exceptions import ActorUnavailableError, RayActorError

    try:
        return await asyncio.wait_for(asyncio.shield(ref), timeout_s)
    except asyncio.TimeoutError:
        raise ServiceUnavailableError(
            f"the task service did not answer within {timeout_s:g} s (it may be restarting)",
            headers={"Retry-After": "5"}) from None
    except (ActorUnavailableError, RayActorError) as exc:
        raise ServiceUnavailableError(f"the task service is restarting: {type(exc).__name__}",
                                      headers={"Retry-After": "5"}) from None
    except Exception as exc:
        err = unwrap_remote_error(exc)
        if isinstance(err, TesseraError):
            raise err from None
        raise


class TaskClient:
    """The task actor (`tasks/actor.py`), the single writer of task state."""

    def __init__(self, actor):
        self._actor = actor

    def configure(self, config: dict, families: dict) -> None:
        """Blocking: an ingress replica's start hands the actor its config and handles."""
        import ray

        ray.get(self._actor.configure.remote(config, families))

    async def ping(self, timeout_s: float) -> bool:
        return await asyncio.wait_for(self._actor.ping.remote(), timeout_s)

    async def submit(self, task: Task, body_hash: str | None, wait_s: int) -> Task:
        return await call(self._actor.submit.remote(task, body_hash, wait_s),
                          timeout_s=wait_s + ACTOR_WAIT_S)

    async def get(self, task_id: str, tenant: str) -> Task:
        return await call(self._actor.get.remote(task_id, tenant))

    async def wait(self, task_id: str, tenant: str, wait_s: float) -> Task:
        return await call(self._actor.wait.remote(task_id, tenant, wait_s),
                          timeout_s=wait_s + ACTOR_WAIT_S)

    async def watch(self, task_id: str, tenant: str, after: int, wait_s: float) -> Task:
        return await call(self._actor.watch.remote(task_id, tenant, after, wait_s),
                          timeout_s=wait_s + ACTOR_WAIT_S)

    async def cancel(self, task_id: str, tenant: str) -> Task:
        return await call(self._actor.cancel.remote(task_id, tenant))

    async def list(self, tenant: str, status: str | None, limit: int,
                   before: tuple[float, str] | None = None) -> list[Task]:
        return await call(self._actor.list.remote(tenant, status, limit, before))

    async def webhook_secret(self, tenant: str) -> str:
        return await call(self._actor.webhook_secret.remote(tenant))


class ModelClient:
    """The model registry actor (`registry/actor.py`): validations, imported models, uploads,
    and the model side's work an ingress does not do itself."""

    def __init__(self, actor):
        self._actor = actor

    async def get(self, tenant: str, model_id: str) -> ModelRecord:
        return await call(self._actor.get.remote(tenant, model_id))

    async def list(self, tenant: str) -> list[ModelRecord]:
        return await call(self._actor.list.remote(tenant))

    async def validate(self, tenant: str, hf_model_id: str, validation_id: str,
                       base_model: str | None) -> Validation:
        # validating may build a tiny checkpoint or fetch a model card: longer than a lookup
        return await call(self._actor.validate.remote(tenant, hf_model_id, validation_id,
                                                      base_model), timeout_s=VALIDATE_WAIT_S)

    async def tiny_adapter(self, family: str) -> None:
        await call(self._actor.tiny_adapter.remote(family), timeout_s=VALIDATE_WAIT_S)

    async def import_model(self, tenant: str, validation_id: str, accepted_license: bool,
                           execution_mode: str, name: str | None) -> ModelRecord:
        return await call(self._actor.import_model.remote(
            tenant, validation_id, accepted_license, execution_mode, name))

    async def add_upload(self, tenant: str, upload_id: str, key: str, content_type: str,
                         expires_at: float, size: int, name: str | None = None,
                         details: dict | None = None) -> None:
        await call(self._actor.add_upload.remote(tenant, upload_id, key, content_type,
                                                 expires_at, size, name, details))

    async def find_file(self, tenant: str, upload_id: str) -> dict | None:
        return await call(self._actor.find_file.remote(tenant, upload_id))

    async def delete_upload(self, tenant: str, upload_id: str) -> bool:
        return await call(self._actor.delete_upload.remote(tenant, upload_id))

    async def find_upload(self, tenant: str, upload_id: str
                          ) -> tuple[str, str, int | None] | None:
        return await call(self._actor.find_upload.remote(tenant, upload_id))
