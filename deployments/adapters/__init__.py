"""LoRA adapters, everything about them in one package, used by both sides:

- `files`: an adapter file checked by its safetensors structure before anything reads it;
- `sources`: the one resolver: any `AdapterSource` (a tenant's tm_* LoRA model, a Hub id, a
  URL, a directory under the models directory, a built-in tiny adapter) to an `AdapterFile`;
- `fit`: pure checks of an adapter's keys and shapes against a base (no torch);
- `stage`: what the ingress does before a 202: resolve, check, store by sha256;
- `convert`: other key formats (kohya, xlabs) renamed by the base pipeline's own loader;
- `cache`: a replica's two caches (checked tensors, adapters loaded on the device);
- `tiny`: the built-in `tessera/tiny-<family>-lora` adapters, made with peft.

Only `convert`, `cache` and `tiny` touch torch, diffusers or peft, and only inside functions;
the ingress imports none of the three.
"""
