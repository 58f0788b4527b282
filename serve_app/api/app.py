"""The FastAPI app on its Serve ingress deployment.

The routers (`models`, `images`, `tasks`, `files`, `uploads`, `webhooks`) hold the routes;
`Ingress` only wires a replica up: the config, the store, the task and model actors, the API
keys, tracing.
Errors are typed and rendered by `core.errors` in one place.
"""

from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from opentelemetry.trace import SpanKind
from ray import serve

from serve_app.api import files, images, models, tasks, uploads, webhooks
from serve_app.api.auth import ApiKeys
from serve_app.api.clients import ModelClient, TaskClient
from serve_app.api.deps import gateway
from serve_app.api.dialects import deepinfra, fal, hyperstack, imagepipeline, openai, replicate
from serve_app.api.dialects.openai import openai_error
from serve_app.api.errors import install_error_handlers
from serve_app.api.gateway import Gateway
from serve_app.api.holds import TenantHolds
from serve_app.api.limits import BodyLimits
from serve_app.core import telemetry
from serve_app.core.config import TesseraConfig
from serve_app.core.errors import ServiceUnavailableError
from serve_app.core.storage import make_store
from serve_app.core.telemetry import extract, setup_logging, setup_tracing, tracer
from serve_app.registry.actor import model_registry
from serve_app.tasks.actor import task_manager

PLAYGROUND = Path(__file__).resolve().parents[1] / "playground"

app = FastAPI(title="Tessera", version="0.1.0",
              description="Self-hosted image generation: import a model, submit, poll, download.")
install_error_handlers(app)
for resource in (models, images, tasks, files, uploads, webhooks, hyperstack, deepinfra,
                 imagepipeline):
    app.include_router(resource.router)
# each compatibility dialect is its own app, with its own error shape
app.mount("/openai", openai.app)
app.mount("/replicate", replicate.app)
app.mount("/fal", fal.app)
# the playground: static files shipped in the package; it talks to the public API only
app.mount("/playground", StaticFiles(directory=PLAYGROUND, html=True), name="playground")


@app.get("/", include_in_schema=False)
async def to_playground():
    return RedirectResponse("playground/")  # relative: never built from the request's Host


class TraceRequests:
    """A server span per request, child of the client's `traceparent` when it sends one.

    A plain ASGI middleware: FastAPIInstrumentor breaks Serve (ray-project/ray#36014), and
    Starlette's `BaseHTTPMiddleware` runs each request in an extra task with its body relayed
    through a stream, which costs every request time.
    """

    def __init__(self, asgi):
        self.asgi = asgi

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.asgi(scope, receive, send)
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with tracer().start_as_current_span(f"{method} {path}", context=extract(headers),
                                            kind=SpanKind.SERVER) as span:
            span.set_attribute("http.method", method)
            # through the module: Serve pickles this app, and a ContextVar cannot be pickled
            telemetry.REQUEST_SPAN.set(span)

            async def send_traced(message):
                if message["type"] == "http.response.start":
                    span.set_attribute("http.status_code", message["status"])
                await send(message)

            try:
                await self.asgi(scope, receive, send_traced)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:  # known only after routing: name the span by its template
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)


def _body_settings():
    ingress = serve.get_replica_context().servable_object
    return ingress.gateway.config.limits.max_body_bytes, ingress.keys.tenant_for


# Added last, so it runs first: a request refused for its key or size is not even traced.
app.add_middleware(TraceRequests)
app.add_middleware(BodyLimits, settings=_body_settings, shapes={
    "/openai/": openai_error, "/replicate/": replicate.problem, "/fal/": fal.detail})


@app.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@app.get("/readyz")
async def readyz(gw: Gateway = Depends(gateway)) -> dict:
    try:
        await gw.tasks.ping(timeout_s=5)
    except Exception as exc:
        raise ServiceUnavailableError(f"task actor not answering: {exc}") from None
    return {"status": "ready", "families": sorted(gw.config.enabled_families())}


def public_url(cfg: TesseraConfig) -> str:
    """The base of the links this server hands out: `public_url`, else Serve's own HTTP bind
    address (a wildcard bind is named as 127.0.0.1: set public_url for other clients), https
    when Serve speaks TLS."""
    if cfg.public_url:
        return cfg.public_url.rstrip("/") + "/"
    from ray.serve.context import _get_global_client

    http = _get_global_client().http_config
    host = "127.0.0.1" if http.host in (None, "", "0.0.0.0", "::") else http.host
    scheme = "https" if http.ssl_certfile else "http"
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{http.port}/"


@serve.deployment(name="ingress")
@serve.ingress(app)
class Ingress:
    def __init__(self, config: dict, families: dict):
        cfg = TesseraConfig.model_validate(config)
        # created with its config and handles, so that Ray can restart it on its own
        tasks = TaskClient(task_manager(cfg.instance, config, families))
        # what the routes reach through `deps` (this instance is the replica's servable object)
        holds = TenantHolds(cfg.limits.max_streams_per_tenant, cfg.limits.max_waiting_per_tenant)
        self.gateway = Gateway(cfg, make_store(cfg), tasks, ModelClient(model_registry(cfg)),
                               holds, public_url(cfg))
        self.keys = ApiKeys.from_env(cfg.data_dir)
        setup_tracing(cfg.tracing, cfg.data_dir, "ingress")
        setup_logging()
        tasks.configure(config, families)
