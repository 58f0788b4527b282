"""The native wire schema: requests become a model's parameters in one call, and the
schema states its bounds."""

from __future__ import annotations

import pytest

from deployments.registry import FAMILIES
from serve_app.core.errors import InvalidRequestError
from serve_app.core.types import ParameterSpec
from serve_app.registry.catalog import CATALOG
from serve_app.wire.schema import GenerationRequest

SPEC = ParameterSpec(num_inference_steps=4, max_steps=8, guidance_scale=3.5,
                     max_guidance_scale=10, width=256, height=256, min_side=64, max_side=512,
                     max_pixels=512 * 256)


def convert(**fields):
    """(the parameters, the warnings) of a generation request on SPEC."""
    req = GenerationRequest(model="tm_x", prompt="p", **fields)
    warnings: list[str] = []
    return req.to_generate_params(SPEC, warnings), warnings


def test_defaults_come_from_the_model():
    params, warnings = convert(seed=9)
    assert (params.width, params.height) == (256, 256)
    assert params.num_inference_steps == 4 and params.guidance_scale == 3.5
    assert params.seeds == [9] and warnings == []


def test_size_forms_and_rounding():
    params, warnings = convert(size="200x100")
    assert (params.width, params.height) == (208, 96)
    assert warnings == ["size rounded from 200x100 to 208x96 (sides must be multiples of 16)"]
    params, _ = convert(width=128, height=64)
    assert (params.width, params.height) == (128, 64)


@pytest.mark.parametrize("fields, param", [
    ({"size": "1024x64"}, "size"),       # side over max_side
    ({"size": "512x512"}, "size"),       # pixels over max_pixels
    ({"size": "32x64"}, "size"),         # side under min_side
    ({"num_inference_steps": 9}, "num_inference_steps"),
    ({"guidance_scale": 11}, "guidance_scale"),
    ({"negative_prompt": "x"}, "negative_prompt"),
])
def test_bounds(fields, param):
    with pytest.raises(InvalidRequestError) as info:
        convert(**fields)
    assert info.value.param == param


def test_guidance_distilled_models_ignore_guidance_with_a_warning():
    spec = SPEC.model_copy(update={"guidance_scale": None})
    req = GenerationRequest(model="m", prompt="p", guidance_scale=5)
    warnings: list[str] = []
    params = req.to_generate_params(spec, warnings)
    assert params.guidance_scale == 0.0 and "ignored" in warnings[0]


def test_seeds_random_when_missing_and_consecutive_for_n():
    a, _ = convert(n=3)
    b, _ = convert(n=3, seed=-1)
    assert len(set(a.seeds)) == 3 and a.seeds[1] == a.seeds[0] + 1
    assert a.seeds != b.seeds
    edge, _ = convert(n=2, seed=2**32 - 1)
    assert edge.seeds == [2**32 - 1, 0]


def test_every_model_fits_the_schema_envelope():
    """The OpenAPI bounds are the widest any model allows: no model accepts what the schema
    refuses, so a client generated from the schema can reach every model's full range."""
    from serve_app.wire import schema as protocol

    specs = [(f.name, f.parameters) for f in FAMILIES.values()] + [
        (e.id, e.parameters) for e in CATALOG.values() if e.parameters is not None]
    for name, p in specs:
        assert p.max_steps <= protocol.API_MAX_STEPS, name
        assert p.max_guidance_scale <= protocol.API_MAX_GUIDANCE, name
        assert protocol.API_MIN_SIDE <= p.min_side and p.max_side <= protocol.API_MAX_SIDE, name
    # the extremes of the schema's raw sides round into the envelope
    for side in (protocol._RAW_MIN_SIDE, protocol._RAW_MAX_SIDE):
        params = GenerationRequest(model="m", prompt="p", width=side, height=side
                                   ).to_generate_params(
            SPEC.model_copy(update={"min_side": protocol.API_MIN_SIDE,
                                    "max_side": protocol.API_MAX_SIDE,
                                    "max_pixels": protocol.API_MAX_SIDE ** 2}), [])
        assert params.width in (protocol.API_MIN_SIDE, protocol.API_MAX_SIDE)


def test_schema_states_the_size_forms():
    """What the validators enforce, the JSON Schema says too (for generated clients)."""
    import jsonschema

    from serve_app.wire.schema import SIZE_RE

    schema = GenerationRequest.model_json_schema()
    base = {"model": "m", "prompt": "p"}
    for body, ok in [({}, True), ({"size": "64x64"}, True), ({"width": 64, "height": 64}, True),
                     ({"size": "64x64", "width": 64}, False), ({"width": 64}, False),
                     ({"height": 64, "width": None}, False), ({"size": None, "width": 64,
                                                               "height": 64}, True),
                     ({"size": "big"}, False), ({"prompt": "  "}, False)]:
        valid = jsonschema.Draft202012Validator(schema).is_valid({**base, **body})
        assert valid == ok, body
        try:
            GenerationRequest(**{**base, **body})
            accepted = True
        except ValueError:
            accepted = False
        assert accepted == ok, body
    assert SIZE_RE.match("1024 x 768")


def test_blank_negative_prompt_is_absent():
    params, _ = convert(negative_prompt="  ")
    assert params.negative_prompt is None


def test_an_edit_keeps_its_input_size_and_carries_its_inputs_and_adapters():
    from serve_app.core.types import AdapterRef
    from serve_app.wire.schema import EditRequest

    req = EditRequest(model="m", prompt="p", image="aGk=", strength=0.4)
    warnings: list[str] = []
    size = req.output_size(SPEC, warnings, input_size=(1000, 250))
    assert size == (512, 128) and "scaled from the input's 1000x250" in warnings[0]
    lora = AdapterRef(path="x/y", scale=0.5, sha256="0" * 64, key="k", size=1)
    params = req.to_generate_params(SPEC, warnings, task="image-to-image", size=size,
                                    image_keys=["a"], mask_key=None, loras=[lora])
    assert (params.width, params.height, params.strength) == (512, 128, 0.4)
    assert params.image_keys == ["a"] and params.loras == [lora]


def test_controlnet_and_reference_fields_are_bounded():
    from pydantic import ValidationError

    ok = {"path": "tessera/tiny-flux-controlnet", "image": "upl_x"}
    req = GenerationRequest(model="m", prompt="p", controlnets=[ok],
                            reference_images=[{"image": "upl_y", "scale": 0}])
    entry = req.controlnets[0]
    assert (entry.conditioning_scale, entry.start, entry.end, entry.preprocess) == (
        1.0, 0.0, 1.0, "none")
    for bad in ({"controlnets": [ok] * 3}, {"controlnets": [{**ok, "start": 0.5, "end": 0.5}]},
                {"controlnets": [{**ok, "conditioning_scale": 2.1}]},
                {"controlnets": [{**ok, "preprocess": "hed"}]},
                {"controlnets": [{**ok, "extra": 1}]},
                {"reference_images": [{"image": "upl_y"}] * 5},
                {"reference_images": [{"image": "upl_y", "scale": 3}]}):
        with pytest.raises(ValidationError):
            GenerationRequest(model="m", prompt="p", **bad)


def test_an_upscale_is_the_input_times_the_models_factor():
    from serve_app.wire.schema import UpscaleRequest

    swin = FAMILIES["swin2sr"].parameters.model_copy(update={"upscale_factor": 2})
    warnings: list[str] = []
    req = UpscaleRequest(model="m", image="upl_x", prompt="ignored", seed=5)
    params = req.to_generate_params(swin, warnings, (64, 48), "k")
    assert (params.task, params.width, params.height, params.upscale) == ("upscale", 128, 96, 2)
    assert params.image_keys == ["k"] and params.seeds == [5] and params.prompt == ""
    assert warnings == ["this upscaler reads no prompt: prompt is ignored"]
    sd = FAMILIES["sd-upscaler"].parameters
    params = UpscaleRequest(model="m", image="upl_x", prompt="a field").to_generate_params(
        sd, [], (40, 32), "k")
    assert (params.width, params.height, params.prompt) == (160, 128, "a field")
    assert params.num_inference_steps == sd.num_inference_steps
