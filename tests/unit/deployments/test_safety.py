"""The safety checker (`deployments.safety`): the tiny checker answers by its documented rule,
the actions do what they say, and a checker that cannot serve is refused by name."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from deployments.safety import (
    TINY_CHECKER,
    CheckerError,
    SafetyChecker,
    censored,
    check_settings,
    checker_source,
)
from serve_app.core.config import SafetySettings


def mean_red(image: Image.Image) -> float:
    """The documented measure: the mean red of the image shrunk to 32x32, in [0, 1]."""
    return float(np.asarray(image.convert("RGB").resize((32, 32), Image.BILINEAR),
                            dtype=float)[..., 0].mean() / 255)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    data = tmp_path_factory.mktemp("safety")
    settings = SafetySettings(checker=TINY_CHECKER)
    return SafetyChecker(settings, checker_source(settings, data, data / "models"), "cpu")


def test_the_tiny_checker_answers_by_its_rule(tiny):
    rng = np.random.default_rng(0)
    images = [Image.new("RGB", (300, 200), (r, 40, 200)) for r in (0, 100, 120, 135, 255)]
    images += [Image.fromarray(rng.integers(0, 256, (128, 160, 3), dtype=np.uint8))
               for _ in range(8)]
    verdict = tiny.verdict(images)
    for image, flagged, score in zip(images, verdict.flagged, verdict.scores, strict=True):
        m = mean_red(image)
        assert abs(score - 1 / (1 + math.exp(-1000 * (m - 0.5)))) < 0.06, (m, score)
        if abs(m - 0.5) > 0.001:  # away from the line itself, the verdict is the rule's
            assert flagged == (m > 0.5), (m, score)
    assert tiny.name == TINY_CHECKER and tiny.verdict([]).flagged == []


def test_the_threshold_and_the_labels_decide(tiny):
    red = Image.new("RGB", (64, 64), (131, 0, 0))  # mean red 0.514: p about 0.999999
    strict = SafetyChecker(SafetySettings(checker=TINY_CHECKER, threshold=1.0),
                           *_source_and_device(tiny))
    assert tiny.verdict([red]).flagged == [True] and strict.verdict([red]).flagged == [False]
    both = SafetyChecker(SafetySettings(checker=TINY_CHECKER, flagged_labels=["nsfw", "SAFE"]),
                         *_source_and_device(tiny))
    assert both.verdict([Image.new("RGB", (8, 8))]).scores[0] == pytest.approx(1.0)


def _source_and_device(checker: SafetyChecker) -> tuple[str, str]:
    return checker.model.name_or_path, "cpu"


def test_actions(tiny):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (96, 128, 3),
                                                              dtype=np.uint8))
    blurred = censored(image, "blur")
    assert blurred.size == image.size and blurred.tobytes() != image.tobytes()
    def detail(im):  # how much neighbouring pixels differ: what a heavy blur takes away
        return np.abs(np.diff(np.asarray(im, dtype=float), axis=1)).mean()

    assert detail(blurred) < detail(image) / 4
    black = censored(image, "block")
    assert black.size == image.size and black.mode == image.mode and not black.getbbox()
    assert tiny.apply(image, flagged=False) is image
    flag = SafetyChecker(SafetySettings(checker=TINY_CHECKER, action="flag"),
                         *_source_and_device(tiny))
    assert flag.apply(image, flagged=True) is image


def test_a_checker_that_cannot_serve_is_refused_by_name(tmp_path):
    from transformers import CLIPTextConfig

    models = tmp_path / "models"
    (models / "text").mkdir(parents=True)
    CLIPTextConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                   intermediate_size=8).save_pretrained(models / "text")
    for checker, says in (("missing-dir", "safety.checker 'missing-dir'"),
                          ("/etc", "safety.checker '/etc'"),
                          ("text", "not an image classifier"),
                          ("nobody/nothing", "could not be read")):
        with pytest.raises(CheckerError, match="safety.checker") as info:
            check_settings(SafetySettings(checker=checker), tmp_path, models)
        assert says in str(info.value)
    with pytest.raises(CheckerError, match="safety.flagged_labels"):
        check_settings(SafetySettings(checker=TINY_CHECKER, flagged_labels=["porn"]),
                       tmp_path, models)
    assert check_settings(SafetySettings(checker=TINY_CHECKER), tmp_path, models)
