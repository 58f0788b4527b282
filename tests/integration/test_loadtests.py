"""The load harness itself, run small against the test service."""

from __future__ import annotations

import json

import pytest

from loadtests import run as load
from loadtests.common import require_loopback
from tests.support.api import KEY_A, KEY_B


def test_burst_report_counts_every_task(service, tmp_path):
    code = load.main(["--scenario", "burst", "--tasks", "12", "--url", service.base_url,
                      "--api-key", KEY_A, "--api-key", KEY_B, "--output", str(tmp_path),
                      "--sizes", "64x64", "--timeout", "300"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert code == 0 and report["lost"] == 0
    assert report["submitted"] == report["accepted"] == report["completed"] == 12
    assert report["downloads"] == {**report["downloads"], "ok": 12, "failed": 0}
    assert report["submit_latency_ms"]["n"] == 12 and report["images_per_second"] > 0
    assert {"queue wait (incl. model load)", "inference", "storage"} <= set(
        report["mean_ms_by_stage"])
    assert "lost 0" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000", "http://192.168.1.5", "http://8.8.8.8"])
def test_load_only_targets_loopback(url):
    with pytest.raises(SystemExit):
        require_loopback(url)
