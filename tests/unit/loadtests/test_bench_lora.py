"""The LoRA benchmark's harness, run tiny: every variant measured, ratios against the base, and
its own check that warm and switching calls loaded nothing again."""

from __future__ import annotations

import json

from loadtests import bench_lora


def test_bench_lora_reports_every_variant(tmp_path):
    code = bench_lora.main(["--repeats", "1", "--layers", "1", "1", "--heads", "2", "--size",
                            "64", "--steps", "1", "--rank", "4", "--output", str(tmp_path)])
    report = json.loads((tmp_path / "lora.json").read_text())
    assert code == 0
    assert set(report["p50_ms"]) == {"base", "base, adapters loaded", "warm", "switch",
                                     "cold (disk)", "cold (URL)"}
    assert all(v > 0 for v in report["p50_ms"].values())
    assert set(report["ratios"]) >= {"warm / base", "switch / warm", "cold (disk) / warm",
                                     "cold (URL) / warm"}
    assert "| warm |" in (tmp_path / "lora.md").read_text()
