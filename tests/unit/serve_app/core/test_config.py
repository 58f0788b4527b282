"""The one validated config: unknown keys, the env overlay, Serve options."""

from __future__ import annotations

import pytest

from serve_app.builder import app_config
from serve_app.core.config import load_config

# ---------------------------------------------------------------- config and auth


def test_config_rejects_unknown_keys_and_families():
    with pytest.raises(Exception, match="max_ongoing_request"):
        load_config({"ingress": {"max_ongoing_request": 3}}, environ={})
    with pytest.raises(Exception, match="unknown families"):
        app_config({"families": {"dalle": {}}}, environ={})


def test_config_env_overlay_for_endpoints(tmp_path):
    cfg = load_config({}, environ={"TESSERA_DATA_DIR": str(tmp_path / "d"),
                                   "TESSERA_S3_ENDPOINT": "127.0.0.1:9000"})
    assert cfg.data_dir == str(tmp_path / "d") and cfg.storage.backend == "s3"
    assert load_config({}, environ={}).storage.backend == "local"


def test_serve_options_autoscaling_or_fixed():
    cfg = load_config({"families": {"flux": {"num_gpus": 1, "autoscaling": {
        "min_replicas": 0, "max_replicas": 3}}}}, environ={})
    opts = cfg.families["flux"].serve_options()
    assert opts["ray_actor_options"]["num_gpus"] == 1
    assert opts["autoscaling_config"]["max_replicas"] == 3 and "num_replicas" not in opts
    assert cfg.ingress.serve_options()["num_replicas"] == 1


def test_autoscaling_window_must_hold_more_than_one_load_report():
    fast = {"metrics_interval_s": 0.5, "look_back_period_s": 2}
    cfg = load_config({"families": {"flux": {"autoscaling": fast}}}, environ={})
    assert cfg.families["flux"].serve_options()["autoscaling_config"]["metrics_interval_s"] == 0.5
    # Serve's own default interval is 10 s: a 2 s window alone is refused, naming both fields
    with pytest.raises(Exception, match="look_back_period_s.*metrics_interval_s"):
        load_config({"families": {"flux": {"autoscaling": {"look_back_period_s": 2}}}},
                    environ={})
