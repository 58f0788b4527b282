"""The application builder that every deployment path points at.

`serve run serve_app.builder:build_app` (embedded defaults), `serve run config.yaml` whose
`import_path` is `serve_app.builder:build_app` with `args`, the tests, and the RayService
`serveConfigV2` all come through `build_app`.
"""

from __future__ import annotations

import logging
import os

from ray.serve import Application

from deployments.loading import ensure_tiny_checkpoint, explain_build_error, quiet_libraries
from deployments.registry import FAMILIES, resolve_families
from deployments.safety import CheckerError, check_settings
from deployments.server import FamilyServer
from serve_app.api.app import Ingress
from serve_app.api.auth import dev_key
from serve_app.core.config import TesseraConfig, load_config
from serve_app.core.storage import make_store

logger = logging.getLogger("tessera")


def check(config: TesseraConfig) -> None:
    """What must hold before anything is served, or the start stops with a message naming the
    setting: the safety checker, when one is configured, is an image classifier that loads
    (never a silent pass of every image)."""
    if config.safety.checker:
        try:
            check_settings(config.safety, config.data_dir, config.models_path)
        except CheckerError as exc:
            raise SystemExit(f"Tessera cannot start: {exc}") from None


def prepare(config: TesseraConfig) -> None:
    """First-start work: the data dir, the dev key and the tiny checkpoints; the checks."""
    os.makedirs(config.data_dir, exist_ok=True)
    check(config)
    if not os.environ.get("TESSERA_API_KEYS"):
        print(f"Tessera dev API key (tenant 'dev'): {dev_key(config.data_dir)}", flush=True)
    store = make_store(config)
    try:
        mode = store.ensure_ready(config.storage.retention_days)
        logger.info("output store %s ready; retention by %s", type(store).__name__, mode)
    except Exception as exc:  # serve anyway: writes retry, and fail tasks clearly if it stays down
        print(f"warning: output store not reachable at start: {exc}", flush=True)
    if config.build_tiny_models:
        quiet_libraries()
        for name in config.enabled_families():
            if FAMILIES[name].build_tiny is not None:
                try:
                    ensure_tiny_checkpoint(config.data_dir, FAMILIES[name])
                except Exception as exc:  # one family's tiny model must not stop the service
                    print(f"warning: tiny {name} checkpoint not built: "
                          f"{explain_build_error(exc)}", flush=True)


def app_config(args: dict | None = None, environ: dict[str, str] | None = None
               ) -> TesseraConfig:
    """The validated config with its families resolved: unknown names are refused, omitted
    families come with their defaults."""
    return resolve_families(load_config(args, environ))


def build_app(args: dict | None = None) -> Application:
    config = app_config(args)
    prepare(config)
    as_dict = config.model_dump(mode="json")
    # One server class, bound once per family (as Ray Serve LLM binds one server per model).
    families = {
        name: FamilyServer.options(name=FAMILIES[name].deployment_name,
                                   **settings.serve_options()).bind(as_dict, name)
        for name, settings in config.enabled_families().items()
    }
    return Ingress.options(**config.ingress.serve_options()).bind(as_dict, families)
