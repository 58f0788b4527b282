"""The control benchmark reports every family's ControlNet ratio, the references, the
preprocessing and the upscalers (one repeat, CPU)."""

from __future__ import annotations

import json

import pytest

from loadtests import bench_control


@pytest.mark.slow
def test_bench_control_reports_every_part(tmp_path):
    bench_control.main(["--output", str(tmp_path), "--repeats", "1"])
    report = json.loads((tmp_path / "control.json").read_text())
    assert set(report["controlnet"]) == set(bench_control.CONTROL_FAMILIES)
    for row in report["controlnet"].values():
        assert row["plain_step_ms"] > 0 and row["controlnet_over_plain"] > 0
    assert set(report["reference"]) == {"flux", "sdxl"}
    assert set(report["prepare"]) == {"canny", "depth"}
    assert all(r["s_per_output_megapixel"] > 0 for r in report["upscale"].values())
    assert "Swin2SR x2, real size" in report["upscale"]
