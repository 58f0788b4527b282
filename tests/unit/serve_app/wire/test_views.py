"""The views (`wire.views`): records as clients see them, what a family says read from the
family, and no server path in any answer."""

from __future__ import annotations

from serve_app.core.models import AdapterSource, ModelRecord, Validation
from serve_app.core.types import AdapterRef, ModelSource, ParameterSpec
from serve_app.wire.views import model_info, task_request, validation_view
from tests.support.standins import make_task


def test_a_model_shows_its_familys_tasks_and_whether_it_takes_loras():
    record = ModelRecord(id="tm_x_1", tenant="a", hf_model_id="x", family="pixart-sigma",
                         source=ModelSource(base="x"), price_per_image=0.02,
                         parameters=ParameterSpec())
    info = model_info(record)
    assert info.tasks == ["text-to-image"] and info.pipeline_tag == "text-to-image"
    assert not info.supports_loras and info.available and info.owned_by == "a"
    assert info.pricing.per_image == 0.02
    flux = model_info(record.model_copy(update={"family": "flux"}), "not deployed here")
    assert flux.supports_loras and not flux.available
    assert flux.unavailable_reason == "not deployed here"


def test_a_validation_names_local_directories_as_the_client_gave_them():
    local = Validation(id="val_1", hf_model_id="my-model", family="flux", supported=True,
                       source=ModelSource(base="/srv/tessera/models/my-model"))
    assert validation_view(local).source == "my-model"
    lora = Validation(id="val_2", hf_model_id="my-lora", kind="lora", base_model="tm_base_1",
                      family="flux", source=ModelSource(base="/srv/tessera/models/base"),
                      adapter=AdapterSource(kind="local", name="/srv/tessera/models/my-lora"))
    view = validation_view(lora)
    assert view.source == "tm_base_1" and view.adapter_source == "my-lora"
    assert "/srv" not in view.model_dump_json()
    hub = Validation(id="val_3", hf_model_id="o/n", kind="lora", family="sdxl",
                     source=ModelSource(base="tessera/tiny-sdxl"),
                     adapter=AdapterSource(kind="hub", name="o/n", file="a.safetensors"))
    assert validation_view(hub).adapter_source == "o/n/a.safetensors"
    assert validation_view(hub).tasks == ["text-to-image", "image-to-image", "inpaint"]


def test_a_tasks_request_is_its_parameters_as_they_ran():
    lora = AdapterRef(path="tessera/tiny-flux-lora", scale=0.5, sha256="a" * 64, key="k",
                      size=1)
    task = make_task(seeds=[3, 4], loras=[lora], response_format="b64_json")
    request = task_request(task)
    assert (request.n, request.seeds, request.response_format) == (2, [3, 4], "b64_json")
    assert [a.model_dump() for a in request.loras] == [
        {"path": "tessera/tiny-flux-lora", "scale": 0.5, "sha256": "a" * 64}]
