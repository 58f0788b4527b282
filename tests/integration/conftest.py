"""Integration tier: one Ray instance and one Tessera app for the whole session, over HTTP.

Ray and Serve are started here, bound to 127.0.0.1, and stopped at the end. Environment that the
replicas must see (API keys, offline Hub, HF cache) is set before `ray.init`, because Ray's worker
processes inherit the environment of the raylet it starts.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.api import (
    KEY_A,
    KEY_B,
    METRICS_PORT,
    TENANT_A,
    TENANT_B,
    Service,
    free_port,
    import_model,
)
from tests.support.webhooks import Receiver


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tessera")


@pytest.fixture(scope="session")
def hf_home(session_dir) -> Path:
    path = session_dir / "hf-home"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def ray_session(session_dir, hf_home):
    import ray

    os.environ.update({
        "TESSERA_API_KEYS": f"{KEY_A}={TENANT_A},{KEY_B}={TENANT_B}",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hf_home / "hub"),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    })
    ray.init(num_cpus=8, num_gpus=0, include_dashboard=False, log_to_driver=False,
             configure_logging=False, _metrics_export_port=METRICS_PORT)
    yield ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def deploy(ray_session, session_dir):
    """Deploy a Tessera app from config args; returns a `Service`."""
    from ray import serve

    from serve_app.builder import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    deployed: dict[str, Service] = {}

    def _deploy(name: str, args: dict | None = None) -> Service:
        if name in deployed:
            return deployed[name]
        data_dir = session_dir / f"data-{name}"
        args = {"data_dir": str(data_dir), "instance": name, **(args or {})}
        serve.run(build_app(args), name=name, route_prefix=f"/{name}")
        service = Service(f"http://127.0.0.1:{port}/{name}", data_dir)
        deployed[name] = service
        return service

    return _deploy


@pytest.fixture(scope="session")
def service(deploy, traces_path, models_root) -> Service:
    from deployments.registry import FAMILIES

    # Every family, one replica each, so no test waits on a cold start.
    return deploy("main", {
        "models_dir": str(models_root),
        "limits": {"task_deadline_s": 120},
        "families": {name: {"num_replicas": 1} for name in FAMILIES},
        "webhooks": {"backoff_base_s": 0.3},
        "inputs": {"allow_private_urls": True, "max_image_bytes": 1_000_000,
                   "max_image_pixels": 2048 * 2048},
        "tracing": {"exporter": "file", "path": str(traces_path)}})


@pytest.fixture(scope="session")
def tls_service(session_dir, ray_session):
    """Tessera over HTTPS with a certificate made here, as `python -m serve_app.run
    --tls-certfile … --tls-keyfile …` runs it (a Ray of its own): one FLUX replica, private
    URLs allowed (the tests' webhook receivers are on 127.0.0.1). The certificate is the one
    hosted clients trust (`SSL_CERT_FILE`) for the session's rest."""
    from tests.support.tls import TlsServer

    directory = session_dir / "tls"
    directory.mkdir()
    server = TlsServer(directory, {
        "families": {"flux": {"num_replicas": 1}}, "limits": {"task_deadline_s": 120},
        "inputs": {"allow_private_urls": True}, "webhooks": {"backoff_base_s": 0.3}},
        env={"TESSERA_API_KEYS": os.environ["TESSERA_API_KEYS"]})
    try:
        service = server.start()
        previous = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = str(server.cert)
        yield service
    finally:
        server.stop()
    if previous is None:
        os.environ.pop("SSL_CERT_FILE", None)
    else:
        os.environ["SSL_CERT_FILE"] = previous


@pytest.fixture(scope="session")
def strict(deploy) -> Service:
    """A FLUX-only app with its defaults, as production runs: private image and webhook URLs
    refused, 4 dispatch slots, the default per-tenant caps."""
    return deploy("strict", {"families": {"flux": {"num_replicas": 1}}})


@pytest.fixture(scope="session")
def models_root(session_dir) -> Path:
    """The service's models_dir: the only place local checkpoints are imported from."""
    path = session_dir / "checkpoints"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def model_dir(models_root) -> Path:
    """A new, empty directory under the models dir, for one test's checkpoint."""
    import secrets

    path = models_root / f"m-{secrets.token_hex(4)}"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def traces_path(session_dir) -> Path:
    return session_dir / "traces.jsonl"


@pytest.fixture(scope="session")
def client_a(service):
    with service.client(KEY_A) as c:
        yield c


@pytest.fixture(scope="session")
def client_b(service):
    with service.client(KEY_B) as c:
        yield c


@pytest.fixture(scope="session")
def tiny_flux_a(client_a) -> str:
    return import_model(client_a, "tessera/tiny-flux")


@pytest.fixture(scope="session")
def local_flux_dir(session_dir) -> Path:
    """A tiny FLUX checkpoint written by save_pretrained into a plain directory."""
    from deployments.registry import FAMILIES

    path = session_dir / "checkpoints" / "flux-local"
    FAMILIES["flux"].build_tiny(str(path))
    (path / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny flux\n")
    return path


@pytest.fixture(scope="session")
def noncommercial_flux_dir(session_dir, local_flux_dir) -> Path:
    import shutil

    path = session_dir / "checkpoints" / "flux-nc"
    shutil.copytree(local_flux_dir, path)
    (path / "README.md").write_text(
        "---\nlicense: other\nlicense_name: flux-1-dev-non-commercial-license\n---\n# A model\n")
    return path


@pytest.fixture(scope="session")
def corrupt_flux_dir(session_dir, local_flux_dir) -> Path:
    """Valid layout, unreadable transformer weights: validation passes, loading fails."""
    import shutil

    path = session_dir / "checkpoints" / "flux-corrupt"
    shutil.copytree(local_flux_dir, path)
    (path / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 64)
    return path


@pytest.fixture(scope="session")
def cached_repo_id(hf_home, local_flux_dir) -> str:
    """A repo laid out in the Hugging Face cache as `hf_hub_download` leaves it."""
    import shutil

    repo_id, revision = "tessera-tests/tiny-flux-cached", "0" * 39 + "1"
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(local_flux_dir, repo / "snapshots" / revision)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    return repo_id


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL 15 server on 127.0.0.1 for the session, stopped by its data directory."""
    from loadtests.local_postgres import Postgres, available

    if not available():
        pytest.skip("PostgreSQL 15 is not installed here (.ci/run installs it)")
    pg = Postgres(free_port()).init().start()
    yield pg
    pg.destroy()


@pytest.fixture
def pg_url(postgres) -> str:
    """The URL of a new, empty database on the PostgreSQL server: one per test."""
    import secrets

    from sqlalchemy import create_engine, text

    name = f"t_{secrets.token_hex(4)}"
    admin = create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A new, empty database: SQLite in the test's directory, and one on the PostgreSQL
    server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tessera.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def receiver():
    """Makes webhook receivers on 127.0.0.1 (`receiver(fail_first=2)`), stopped after the test."""
    made: list[Receiver] = []

    def make(fail_first: int = 0) -> Receiver:
        made.append(Receiver(fail_first))
        return made[-1]

    yield make
    for r in made:
        r.close()
