"""The model registry: the catalog of well-known checkpoints (`catalog`), `validate-hf`
(`validation`), and the registry actor that keeps validations, imported models and uploads per
tenant (`actor`). Records are domain types (`core.models`); the wire views map them."""
