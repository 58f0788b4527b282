"""The HTTP API: the FastAPI app and its Serve ingress (`app`), one router per resource, and
the gateway the routes call (`gateway`: the actors, the store and the one submit path)."""
