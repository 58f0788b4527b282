"""The bottom layer: types, the config schema, errors, object keys, storage, telemetry, metrics.

It imports neither `ray.serve` nor any model family, so validating a config or reading a task
costs no more than pydantic; `deployments` and the rest of `serve_app` build on it.
"""
