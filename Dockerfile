# The image cluster/ray-service.yaml runs (kuberay.image in cluster/tessera-cluster.yaml):
# Ray's GPU image of the Ray version pyproject.toml pins (CUDA, torch-ready, torchvision
# installable), plus Tessera and its dependencies. Not built in CI: no Docker engine there.
#   docker build -t registry.example.com/tessera:0.1.0 . && docker push registry.example.com/tessera:0.1.0
FROM rayproject/ray:2.60.0-py311-gpu

WORKDIR /opt/tessera
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users serve_app ./serve_app
COPY --chown=ray:users deployments ./deployments
COPY --chown=ray:users cluster ./cluster
COPY --chown=ray:users loadtests ./loadtests
# the CUDA build of the pinned torch and torchvision (the Qwen2-VL processors need it)
RUN pip install --no-cache-dir ".[gpu]"

ENV TESSERA_DATA_DIR=/data/tessera HF_HOME=/data/hf
