"""The safety benchmark reports every checker at both batch sizes (one repeat, CPU)."""

from __future__ import annotations

import json

import pytest

from loadtests import bench_safety


@pytest.mark.slow
def test_bench_safety_reports_every_checker(tmp_path):
    bench_safety.main(["--output", str(tmp_path), "--repeats", "1"])
    report = json.loads((tmp_path / "safety.json").read_text())
    assert set(report["runs"]) == {"1 image(s)", "4 image(s)"}
    for row in report["runs"].values():
        assert row["pipeline_call_ms"] > 0
        for name in ("tiny checker", "ViT-base (224²)"):
            assert 0 < row[name]["share"] < 1 and row[name]["per_image_ms"] > 0
    assert report["vit_base_preprocess_1024_ms_per_image"] > 0
