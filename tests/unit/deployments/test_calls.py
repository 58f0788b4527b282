"""Per-step progress from the real pipelines: every step reported, the images unchanged."""

from __future__ import annotations

import pytest

from deployments.calls import Job
from deployments.outputs import encode_image
from deployments.registry import FAMILIES
from tests.support.batch_check import load, params, runner


@pytest.mark.parametrize("family", ["flux", "pixart-sigma"])  # callback_on_step_end; callback
def test_each_step_is_reported_and_the_bytes_stay(family, tmp_path):
    spec = FAMILIES[family]
    r, pipe = runner(spec), load(spec, str(tmp_path))
    job = Job(params(0, "a red fox", [3], num_inference_steps=5))
    plain = [encode_image(im, "png") for im in r.run(pipe, [job])]
    steps: list[tuple[int, int]] = []
    def on_step(_pipe, step, total, _latents):
        steps.append((step, total))

    reported = [encode_image(im, "png") for im in r.run(pipe, [job], on_step=on_step)]
    assert steps == [(i, 5) for i in range(1, 6)]
    assert reported == plain  # watching the steps changes nothing


def test_image_to_image_counts_the_steps_it_really_runs(tmp_path):
    from PIL import Image

    spec = FAMILIES["flux"]
    r, pipe = runner(spec), load(spec, str(tmp_path))
    job = Job(params(0, "a cat", [5], task="image-to-image", strength=0.5,
                     num_inference_steps=8, image_keys=["in"]), None,
              [Image.new("RGB", (64, 64), (200, 30, 30))])
    steps: list[tuple[int, int]] = []
    r.run(pipe, [job], on_step=lambda _pipe, s, t, _latents: steps.append((s, t)))
    assert steps == [(i, 4) for i in range(1, 5)]  # strength 0.5 of 8 steps
