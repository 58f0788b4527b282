"""Upgrading from the previous release: its database (as its own code wrote it, in
`tests/support/legacy_rows_0003.json`) migrates to today's records on SQLite and PostgreSQL and
reads back whole, and a data directory it left serves its models and tasks."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sqlalchemy import insert

from serve_app.core.config import TesseraConfig
from serve_app.core.models import AdapterSource, Validation
from serve_app.core.types import ModelSource
from serve_app.db import registry as registry_rows
from serve_app.db import tasks as task_rows
from serve_app.db.engine import MIGRATIONS, make_engine, migrate
from serve_app.db.schema import metadata
from tests.support.api import KEY_A, TENANT_A, download, generate, wait_task

LEGACY = Path(__file__).resolve().parents[1] / "support" / "legacy_rows_0003.json"
TINY_FLUX = ModelSource(base="tessera/tiny-flux")


def legacy_rows(models_dir: Path, tenant: str = "dev") -> dict[str, list[dict]]:
    """The previous release's rows, its local paths under `models_dir`, owned by `tenant`."""
    text = LEGACY.read_text().replace("{models_dir}", str(models_dir))
    text = text.replace('"dev/', f'"{tenant}/')  # its storage keys
    return json.loads(text.replace('"dev"', json.dumps(tenant)))


def write_release_0003(url: str, rows: dict[str, list[dict]]) -> None:
    """A database as the previous release left it: schema 0003 and its rows."""
    from alembic import command
    from alembic.config import Config

    engine = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "0003")
        for name, table_rows in rows.items():
            connection.execute(insert(metadata.tables[name]), table_rows)
    engine.dispose()


def test_a_previous_release_database_upgrades_and_reads_back_every_row(db_url, tmp_path):
    from serve_app.registry.actor import ModelRegistry

    models_dir = tmp_path / "models"
    rows = legacy_rows(models_dir)
    write_release_0003(db_url, rows)
    config = TesseraConfig(data_dir=str(tmp_path), models_dir=str(models_dir))
    registry = ModelRegistry(db_url, config)  # migrates to head, as every start does

    models = {r.id: r for r in registry.list("dev")}
    assert set(models) == {r["id"] for r in rows["models"]}
    for model_id, record in models.items():
        assert registry.get("dev", model_id) == record
    pipeline = models["tm_tiny-flux_57a3faae"]
    assert (pipeline.kind, pipeline.source, pipeline.price_per_image) == (
        "pipeline", TINY_FLUX, 0.01)
    assert pipeline.parameters.num_inference_steps == 4 and pipeline.name == "pipeline"
    tiny_lora = models["tm_tiny-flux-lora_fac095fd"]
    assert tiny_lora.kind == "lora" and tiny_lora.source == TINY_FLUX
    assert tiny_lora.adapter == AdapterSource(kind="tiny", name="tessera/tiny-flux-lora")
    assert tiny_lora.adapter_sha256.startswith("3a50cd31")
    local = models["tm_my-lora_5127c7f1"]
    assert local.adapter == AdapterSource(kind="local", name=str(models_dir / "my-lora"))
    hub = models["tm_hub-lora_0000beef"]
    assert hub.adapter == AdapterSource(kind="hub", name="someone/hub-lora",
                                        file="pytorch_lora_weights.safetensors")
    srpo = models["tm_srpo_0000abcd"]
    assert srpo.source == ModelSource(base="black-forest-labs/FLUX.1-dev",
                                      transformer="tencent/SRPO")
    assert srpo.license_accepted and srpo.requires_license_acceptance

    engine = registry.engine
    validations = {}
    for row in rows["validations"]:
        stored = registry_rows.get_validation(engine, row["id"], "dev", 0)
        validations[row["id"]] = Validation.model_validate(stored)
    assert validations["val_finetune_ok"].source == srpo.source
    assert validations["val_lora_local"].adapter == local.adapter
    assert validations["val_unsupported"].errors and not validations["val_unsupported"].supported
    assert validations["val_pipeline"].price_per_image == 0.01
    # a validation the previous release stored still imports (within its 24 h)
    imported = registry.import_model("dev", "val_lora_tiny", False, "instant")
    assert imported.adapter == tiny_lora.adapter and imported.source == TINY_FLUX

    tasks = {t: task_rows.load(engine, t)[0] for t in (r["id"] for r in rows["tasks"])}
    done = tasks["task_done"]
    assert done.status == "completed" and done.response_format == "b64_json"
    assert done.result.usage.total_tokens == done.result.usage.output_tokens == 256
    assert tasks["task_finetune"].source == srpo.source
    assert [a.path for a in tasks["task_queued"].params.loras] == ["tessera/tiny-flux-lora"]
    assert tasks["task_failed"].error.code == "generation_failed"
    assert {t.id for t in task_rows.unfinished(engine)} == {"task_queued", "task_finetune"}
    migrate(engine)  # a second start finds nothing to do
    assert task_rows.load(engine, "task_done")[0] == done


def test_a_previous_release_data_directory_serves_its_models_and_tasks(deploy, session_dir):
    """Its database and outputs as the previous release left them: the app starts on them,
    lists and runs the imported model, shows the finished task with a working link, and runs
    the task it had queued."""
    data_dir = session_dir / "data-legacy"
    rows = legacy_rows(data_dir / "models", tenant=TENANT_A)
    now = time.time()
    rows["models"] = [r for r in rows["models"] if r["id"] == "tm_tiny-flux_57a3faae"]
    rows["tasks"] = [r for r in rows["tasks"] if r["id"] in ("task_done", "task_queued")]
    for row in rows["tasks"]:  # made a moment ago, so their deadlines are ahead
        record = row["record"]
        record["created_at"] = record["history"][0]["at"] = row["created_at"] = now
        record["deadline_at"] = now + 600
        if row["id"] == "task_queued":  # without the adapter whose staged file is not here
            record["params"]["loras"] = record["request"]["loras"] = []
    done = next(r["record"] for r in rows["tasks"] if r["id"] == "task_done")
    key = done["result"]["images"][0]["key"]
    assert key.startswith(f"{TENANT_A}/")
    output = data_dir / "outputs" / key
    output.parent.mkdir(parents=True)
    output.write_bytes(b"\x89PNG\r\n\x1a\n previous release")
    data_dir.mkdir(parents=True, exist_ok=True)
    write_release_0003(f"sqlite:///{data_dir / 'tessera.db'}", rows)

    service = deploy("legacy", {"families": {"flux": {"num_replicas": 1}}})
    with service.client(KEY_A) as client:
        models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
        assert models["tm_tiny-flux_57a3faae"]["tasks"] == [
            "text-to-image", "image-to-image", "inpaint"]
        assert models["tm_tiny-flux_57a3faae"]["pricing"] == {"per_image": 0.01,
                                                              "currency": "USD"}
        done = client.get("/v1/tasks/task_done").json()
        assert done["status"] == "completed" and done["request"]["response_format"] == "b64_json"
        assert done["result"]["usage"]["total_tokens"] == 256
        assert download(done["result"]["data"][0]["url"]).endswith(b"previous release")
        assert wait_task(client, "task_queued")["status"] == "completed"
        made = generate(client, "tm_tiny-flux_57a3faae", seed=1)
        assert made["status"] == "completed", made

