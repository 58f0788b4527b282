"""What the routes reach: one object per job, built once per ingress replica.

`resolver` (which model a request names), `adapters` (the LoRA adapters it names, staged),
`conditioning` (its ControlNets and reference images, staged), `submitter` (the one submit
path every dialect uses), `inputs` (edit inputs and uploads), `reads` (task views and waits),
and the typed clients of the task and model actors. Nothing here knows HTTP: the routes and their
dependencies (`deps.py`) turn requests into typed options and results into responses.
"""

from __future__ import annotations

from deployments.adapters.sources import AdapterResolver
from deployments.adapters.stage import AdapterStager
from serve_app.api.clients import ModelClient, TaskClient
from serve_app.api.conditioning import ConditioningStager
from serve_app.api.edit_inputs import InputLoader
from serve_app.api.holds import TenantHolds
from serve_app.api.reads import TaskReader
from serve_app.api.resolve import ModelResolver
from serve_app.api.submit import Submitter
from serve_app.core.config import TesseraConfig
from serve_app.core.storage import OutputStore


class Gateway:
    def __init__(self, config: TesseraConfig, store: OutputStore, tasks: TaskClient,
                 models: ModelClient, holds: TenantHolds, public_url: str):
        self.config = config
        self.store = store
        self.tasks = tasks
        self.models = models
        self.holds = holds
        # where clients reach this server: the base of every link, never the request's Host
        self.public_url = public_url
        self.resolver = ModelResolver(config, models)
        self.inputs = InputLoader(config, store, models)
        self.reads = TaskReader(config, store, tasks, holds)
        loras = config.loras
        self.adapters = AdapterStager(config, store, AdapterResolver(
            config.data_dir, config.models_path, loras.max_bytes, loras.url_timeout_s,
            config.inputs.allow_private_urls, lookup=self.resolver.imported,
            tiny_ready=models.tiny_adapter))
        self.conditioning = ConditioningStager(config, self.inputs, self.resolver)
        self.submitter = Submitter(config, self.resolver, self.inputs, self.adapters,
                                   self.conditioning, tasks, holds)

    def base_url(self, app_prefix: str) -> str:
        """The base of the links in an answer: `public_url` as configured; by default the bind
        address and the app's route prefix (which Serve sets, not the client)."""
        if self.config.public_url:
            return self.public_url
        return f"{self.public_url.rstrip('/')}{app_prefix.rstrip('/')}/"
