"""Stored records in the shapes releases before migration 0004 wrote, upgraded to today's
(`core.models`, `core.tasks`): plain JSON in, plain JSON out. Migration 0004 applies them to
every row; the registry applies `model_record` to a `models.json` from before the database.

Frozen with the migration: a later change of the records gets a migration of its own.

- a model source was one string, `<base>` or `<base>|transformer=<fine-tune>`;
- an adapter's location was one string: a built-in `tessera/tiny-<family>-lora[/file]`, a Hub
  `owner/name[/file]`, or an absolute directory under the models directory;
- a model record embedded the wire's `ModelInfo` (with its `Pricing`), a validation was the
  wire's `ValidateResponse`;
- a task kept its parameters twice (`params` and a `request` summary) and could carry a usage
  with `total_tokens` 0.
"""

from __future__ import annotations

TRANSFORMER_SEP = "|transformer="


def model_source(text: str | dict | None) -> dict | None:
    if text is None or isinstance(text, dict):
        return text
    base, sep, transformer = text.partition(TRANSFORMER_SEP)
    return {"base": base, "transformer": transformer} if sep else {"base": base}


def adapter_source(text: str | dict | None) -> dict | None:
    if text is None or isinstance(text, dict):
        return text
    if text.startswith("/"):
        if text.endswith(".safetensors"):
            directory, _, file = text.rpartition("/")
            return {"kind": "local", "name": directory, "file": file}
        return {"kind": "local", "name": text, "file": None}
    parts = text.split("/")
    repo, file = "/".join(parts[:2]), "/".join(parts[2:]) or None
    tiny = repo.startswith("tessera/tiny-") and repo.endswith("-lora")
    return {"kind": "tiny" if tiny else "hub", "name": repo, "file": file}


def model_record(old: dict) -> dict:
    if "info" not in old:
        return old
    info = old["info"]
    pricing = info.get("pricing") or {}
    return {
        "id": info["id"], "tenant": info["owned_by"], "hf_model_id": info["hf_model_id"],
        "family": info["family"], "source": model_source(old["source"]),
        "kind": info.get("kind", "pipeline"), "name": info.get("name"),
        "license": info.get("license", "unknown"),
        "requires_license_acceptance": info.get("requires_license_acceptance", False),
        "license_accepted": old.get("license_accepted", False),
        "price_per_image": pricing.get("per_image", 0.0),
        "currency": pricing.get("currency", "USD"), "parameters": info["parameters"],
        "created_at": info.get("created_at"), "execution_mode": info.get("execution_mode"),
        "base_model": info.get("base_model"), "adapter": adapter_source(old.get("adapter")),
        "adapter_sha256": old.get("adapter_sha256")}


def validation(old: dict) -> dict:
    if "validation_id" not in old:
        return old
    pricing = old.get("pricing")
    return {
        "id": old["validation_id"], "hf_model_id": old["hf_model_id"],
        "supported": old.get("supported", False), "errors": old.get("errors", []),
        "warnings": old.get("warnings", []), "family": old.get("family"),
        "pipeline_class": old.get("pipeline_class"), "license": old.get("license"),
        "requires_license_acceptance": old.get("requires_license_acceptance", False),
        "price_per_image": pricing["per_image"] if pricing else None,
        "currency": pricing.get("currency", "USD") if pricing else "USD",
        "parameters": old.get("parameters"), "source": model_source(old.get("source")),
        "kind": old.get("kind", "pipeline"), "base_model": old.get("base_model"),
        "adapter": adapter_source(old.get("adapter_source")), "rank": old.get("rank"),
        "target_modules": old.get("target_modules", []), "size": old.get("size"),
        "sha256": old.get("sha256")}


def task_record(old: dict) -> dict:
    if "request" not in old and not isinstance(old.get("source"), str):
        return old
    new = {k: v for k, v in old.items() if k != "request"}
    new["source"] = model_source(old["source"])
    new["response_format"] = (old.get("request") or {}).get("response_format", "url")
    usage = (new.get("result") or {}).get("usage")
    if usage is not None and not usage.get("total_tokens"):
        usage["total_tokens"] = usage["output_tokens"]
    return new
