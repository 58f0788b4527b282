"""GPU tier: `gpu`-marked tests on CUDA in bfloat16, skipped where no CUDA device exists (the
root conftest marks them skipped), so CI without a GPU stays green and a GPU machine runs them
with `make test` as it is."""
