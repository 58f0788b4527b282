"""validate-hf on odd ids, an unreachable Hub and model cards."""

from __future__ import annotations

import pytest

from serve_app.registry.validation import license_from_model_card


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connections are refused


@pytest.mark.parametrize("model_id, says", [
    ("x" * 1000, "neither a model directory under"),
    ("a/" + "b" * 998, "not a valid Hugging Face repo id"),
    ("a--b/c", "not a valid Hugging Face repo id"),
    ("a/b\x00c", "neither a model directory under"),
    ("~\x0f\x8d`\U0007061aepp\x85\x0c\x9a", "neither a model directory under"),  # no home dir
])
def test_validate_answers_odd_ids_with_a_reason(tmp_path, model_id, says):
    from serve_app.core.config import TesseraConfig
    from serve_app.registry.validation import Validator

    result = Validator(TesseraConfig(data_dir=str(tmp_path))).validate(model_id, "val_x")
    assert not result.supported and says in result.errors[0], result.errors


def test_validate_says_the_hub_was_unreachable_quickly(tmp_path, monkeypatch):
    """A repo id that is not cached, with the Hub unreachable: 'could not be reached', at once
    (huggingface_hub alone retries for 23 s), never 'not a diffusers pipeline'."""
    import time

    from huggingface_hub import constants

    from serve_app.core.config import TesseraConfig
    from serve_app.registry.validation import Validator

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    started = time.monotonic()
    result = Validator(TesseraConfig(data_dir=str(tmp_path))).validate(
        "black-forest-labs/FLUX.1-schnell", "val_x")
    assert time.monotonic() - started < 5
    assert not result.supported
    message = result.errors[0]
    assert "could not be reached" in message and "not a diffusers" not in message
    assert "the Hugging Face cache" in message  # where it looked, without the server's path
    assert str(tmp_path) not in message


@pytest.mark.parametrize("card, licence", [
    ("---\nlicense: mit\n---\n", "mit"),
    ("---\nlicense: other\nlicense_name: my-licence\n---\nbody", "my-licence"),
    ("---\nlicense: [apache-2.0]\n---\n", "apache-2.0"),
    ("# no front matter\nlicense: mit", None),
    ("---\n: : broken yaml [\n---\n", None),
])
def test_licence_from_model_card(card, licence):
    assert license_from_model_card(card) == licence
