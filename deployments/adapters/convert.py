"""Adapters in other key formats (kohya, xlabs and the rest), renamed as diffusers and peft name
them by the base pipeline's own loader, so their keys can be checked against the base's modules.
Used where diffusers may be imported: the model registry's validation and the replicas."""

from __future__ import annotations

from serve_app.core.errors import LoraIncompatibleError


def pipeline_takes_loras(pipeline_class: str) -> bool:
    """Whether diffusers' pipeline class loads LoRAs: what each `FamilySpec.takes_loras` must
    say (a unit test holds the two together)."""
    import diffusers

    cls = getattr(diffusers, pipeline_class, None)
    return cls is not None and hasattr(cls, "load_lora_weights")


def converted_by(pipeline_class, tensors: dict) -> dict:
    """The adapter in diffusers' naming: the pipeline's own loader converts kohya, xlabs and
    other formats (`lora_state_dict`, a class method, so no base need be loaded), from tensors
    Tessera already checked."""
    if isinstance(pipeline_class, str):
        import diffusers

        pipeline_class = getattr(diffusers, pipeline_class)
    try:
        out = pipeline_class.lora_state_dict(dict(tensors))
    except Exception as exc:  # a layout no converter knows
        raise LoraIncompatibleError(f"the adapter's keys are in no format "
                                    f"{pipeline_class.__name__} loads: {exc}"[:400]) from None
    # the UNet pipelines answer (state dict, network alphas): alphas are scales, not modules
    return peft_named(out[0] if isinstance(out, tuple) else out)


def peft_named(state: dict) -> dict:
    """Older diffusers names (`attn1.processor.to_k_lora.down`, `lora_linear_layer`), which
    the UNet loaders still produce from kohya files, renamed as peft names them: the modules
    they adapt are then the base's own module paths."""
    from diffusers.utils.state_dict_utils import (
        DIFFUSERS_OLD_TO_PEFT,
        UNET_TO_DIFFUSERS,
        convert_state_dict,
    )

    if not any("_lora." in k or "lora_linear_layer" in k or ".lora.down" in k or
               ".lora.up" in k for k in state):
        return state
    encoders = {k: v for k, v in state.items() if k.startswith("text_encoder")}
    rest = {k: v for k, v in state.items() if k not in encoders}
    out = convert_state_dict(rest, UNET_TO_DIFFUSERS) if rest else {}
    if encoders:
        out.update(convert_state_dict(encoders, DIFFUSERS_OLD_TO_PEFT))
    return out
