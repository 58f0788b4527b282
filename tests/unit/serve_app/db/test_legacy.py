"""The previous release's stored records, upgraded (`db.legacy`, what migration 0004 runs):
each shape it wrote becomes today's typed record, and a record already upgraded is left as
it is."""

from __future__ import annotations

import json
from pathlib import Path

from serve_app.core.models import AdapterSource, ModelRecord, Validation
from serve_app.core.tasks import Task
from serve_app.core.types import ModelSource
from serve_app.db import legacy

ROWS = json.loads((Path(__file__).resolve().parents[3] / "support" /
                   "legacy_rows_0003.json").read_text())


def test_sources_with_structure_inside_become_typed_values():
    assert legacy.model_source("tessera/tiny-flux") == {"base": "tessera/tiny-flux"}
    assert ModelSource.model_validate(legacy.model_source(
        "black-forest-labs/FLUX.1-dev|transformer=tencent/SRPO")) == ModelSource(
        base="black-forest-labs/FLUX.1-dev", transformer="tencent/SRPO")
    cases = {
        "tessera/tiny-flux-lora": AdapterSource(kind="tiny", name="tessera/tiny-flux-lora"),
        "owner/name/a/b.safetensors": AdapterSource(kind="hub", name="owner/name",
                                                    file="a/b.safetensors"),
        "/srv/models/style": AdapterSource(kind="local", name="/srv/models/style"),
        "/srv/models/style/x.safetensors": AdapterSource(kind="local", name="/srv/models/style",
                                                         file="x.safetensors")}
    for text, source in cases.items():
        assert AdapterSource.model_validate(legacy.adapter_source(text)) == source


def test_every_stored_shape_becomes_a_record_once():
    for row in ROWS["models"]:
        record = ModelRecord.model_validate(legacy.model_record(row["record"]))
        assert record.id == row["id"] and record.tenant == "dev"
        assert legacy.model_record(record.model_dump(mode="json")) == record.model_dump(
            mode="json")
    for row in ROWS["validations"]:
        validation = Validation.model_validate(legacy.validation(row["record"]))
        assert validation.id == row["id"]
        new = validation.model_dump(mode="json")
        assert legacy.validation(new) is new
    for row in ROWS["tasks"]:
        task = Task.model_validate(legacy.task_record(row["record"]))
        assert task.id == row["id"] and "request" not in task.model_dump()
        new = task.model_dump(mode="json")
        assert legacy.task_record(new) is new


def test_a_task_keeps_how_its_images_are_answered_and_bills_output_tokens():
    done = next(r["record"] for r in ROWS["tasks"] if r["id"] == "task_done")
    old = json.loads(json.dumps(done))
    old["result"]["usage"]["total_tokens"] = 0  # as records from before total_tokens hold it
    task = Task.model_validate(legacy.task_record(old))
    assert task.response_format == "b64_json"
    assert task.result.usage.total_tokens == task.result.usage.output_tokens == 256
