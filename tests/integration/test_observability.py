"""One task's span tree, metrics that move, and structured logs."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time

import httpx

from tests.support.api import METRICS_PORT, TENANT_A, wait_task

HTTP_SPAN = "POST /v1/images/generations"
REPLICA_SPANS = {"model.load", "pipeline.denoise", "image.encode", "storage.write"}


def spans_of(path, trace_id: str, want: set[str], timeout: float = 20) -> dict[str, dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = {}
        if path.exists():
            for line in path.read_text().splitlines():
                span = json.loads(line)
                if span["trace_id"] == trace_id:
                    found[span["name"]] = span
        if want <= set(found):
            return found
        time.sleep(0.3)
    raise AssertionError(f"spans {sorted(want - set(found))} never arrived; got {sorted(found)}")


def all_spans(path, trace_id: str) -> dict[str, dict]:
    spans = (json.loads(line) for line in path.read_text().splitlines())
    return {s["span_id"]: s for s in spans if s["trace_id"] == trace_id}


def test_one_trace_per_task_from_request_to_storage(client_a, tiny_flux_a, traces_path):
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    r = client_a.post("/v1/images/generations",
                      json={"model": tiny_flux_a, "prompt": "p", "size": "64x64", "n": 2},
                      headers={"traceparent": f"00-{trace_id}-{parent}-01"})
    assert r.status_code == 202
    task_id = r.json()["task_id"]
    assert wait_task(client_a, task_id)["status"] == "completed"

    want = {HTTP_SPAN, "tessera.queue", "tessera.dispatch", "tessera.generate"} | REPLICA_SPANS
    spans = spans_of(traces_path, trace_id, want)
    http, dispatch = spans[HTTP_SPAN], spans["tessera.dispatch"]
    generate = spans["tessera.generate"]
    by_id = {s["span_id"]: s for s in spans.values()} | all_spans(traces_path, trace_id)

    def ancestors(span):
        while span and span["parent_id"] in by_id:
            span = by_id[span["parent_id"]]
            yield span["span_id"]

    assert http["parent_id"] == parent  # the client's traceparent was honoured
    # queue and dispatch hang under the request (FastAPI's endpoint span may sit between)
    assert http["span_id"] in ancestors(spans["tessera.queue"])
    assert http["span_id"] in ancestors(dispatch)
    assert generate["parent_id"] == dispatch["span_id"]
    for name in REPLICA_SPANS:
        assert spans[name]["parent_id"] == generate["span_id"], name
    # the work after the 202 answer is in the same trace, and later than the answer
    assert dispatch["end_ns"] > http["end_ns"]
    for span in (http, dispatch, generate):
        attrs = span["attributes"]
        assert attrs["tessera.task_id"] == task_id and attrs["tessera.tenant"] == TENANT_A
        assert attrs["tessera.model"] == tiny_flux_a and attrs["tessera.family"] == "flux"
    assert generate["attributes"]["tessera.batch_size"] == 2
    assert spans["pipeline.denoise"]["attributes"]["tessera.batch_size"] == 2
    roles = {spans[n]["resource"]["tessera.role"] for n in (HTTP_SPAN, "tessera.dispatch",
                                                            "tessera.generate")}
    assert roles == {"ingress", "task-actor", "family-flux"}


def scrape() -> str:
    return httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5).text


def metric_sum(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_counters_move(client_a, tiny_flux_a):
    def snapshot():
        text = scrape()
        return (metric_sum(text, "ray_tessera_tasks_total", status="completed", family="flux"),
                metric_sum(text, "ray_tessera_images_total", family="flux"),
                metric_sum(text, "ray_tessera_generation_seconds_count", family="flux"),
                metric_sum(text, "ray_tessera_task_errors_total"))

    before = snapshot()
    r = client_a.post("/v1/images/generations",
                      json={"model": tiny_flux_a, "prompt": "p", "size": "64x64", "n": 3})
    assert wait_task(client_a, r.json()["task_id"])["status"] == "completed"
    deadline = time.time() + 40  # Ray exports metrics every few seconds
    while time.time() < deadline:
        after = snapshot()
        if after[0] >= before[0] + 1 and after[1] >= before[1] + 3 and after[2] > before[2]:
            break
        time.sleep(1)
    assert after[0] >= before[0] + 1, (before, after)
    assert after[1] >= before[1] + 3 and after[2] > before[2]
    text = scrape()
    for name in ("ray_tessera_queue_wait_seconds_bucket", "ray_tessera_end_to_end_seconds_bucket",
                 "ray_tessera_batch_size_bucket", "ray_tessera_storage_seconds_bucket",
                 "ray_tessera_queue_depth"):
        assert re.search(rf"^{name}\{{", text, re.M), name


def test_json_logs_carry_task_and_trace_ids(capsys):
    from opentelemetry.sdk.trace import TracerProvider

    from serve_app.core.telemetry import JsonLogFormatter

    record = logging.LogRecord("tessera.tasks", logging.INFO, __file__, 1, "task %s done",
                               ("t1",), None)
    record.task_id = "task_1"
    span = TracerProvider().get_tracer("t").start_span("s")
    from opentelemetry import trace

    with trace.use_span(span):
        line = json.loads(JsonLogFormatter().format(record))
    assert line["message"] == "task t1 done" and line["task_id"] == "task_1"
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
