"""A bounded schemathesis run over every operation of the API's own OpenAPI document.

Fixed seed, about 400 cases (valid and invalid data), well under two minutes: no response may
be >= 500, every 4xx must be the one error shape, every request must be answered. The long run
is `python -m loadtests.fuzz --cases 10000 --output DIR`.
"""

from __future__ import annotations

import pytest

from loadtests.fuzz import run_fuzz
from tests.support.api import KEY_A, import_model

CASES = 400


@pytest.fixture(scope="module")
def fuzz_service(deploy):
    from ray import serve

    from deployments.registry import FAMILIES

    # FLUX only; a tenant queue of 2 keeps the fuzzed tasks that are accepted few
    service = deploy("fuzz", {
        "families": {name: {"enabled": name == "flux", "num_replicas": 1, "max_batch_size": 1}
                     for name in FAMILIES},
        "limits": {"max_queued_per_tenant": 2, "task_deadline_s": 30}})
    yield service
    serve.delete("fuzz")  # stops whatever fuzzed work is still running


def test_no_request_makes_the_api_answer_5xx(fuzz_service):
    with fuzz_service.client() as client:
        model = import_model(client, "tessera/tiny-flux")
    report = run_fuzz(fuzz_service.base_url, KEY_A, cases=CASES, seed=0, model=model,
                      request_timeout=30, log=lambda line: None)
    assert report["cases"] >= CASES * 0.9, report["statuses"]
    assert report["operations"] >= 13
    assert report["server_errors"] == [], report["server_errors"][:3]
    assert report["bad_error_shapes"] == [], report["bad_error_shapes"][:3]
    assert report["no_answer"] == [], report["no_answer"][:3]
    # valid data is mostly accepted where it can be: the schema states the validators' rules
    generations = report["positive_by_operation"]["POST /v1/images/generations"]
    assert generations.get("2xx", 0) > 0, report["positive_rejections"]
