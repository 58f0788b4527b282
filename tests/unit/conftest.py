"""Unit tier: in-process, no Ray, no servers. Functions, state machines and the task actor's
logic with a stand-in handle; each family's real tiny pipeline where batching is checked."""
