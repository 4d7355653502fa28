#!/usr/bin/env bash
# Install the GPU stack from the repository's requirement files, in the only order that works: CUDA torch +
# vLLM + the common stack, then flash-attn built against that torch, then the packages taken without their
# dependencies. docker/Dockerfile and `make setup-gpu` both run this, so the image and a cluster's own
# environment cannot drift. Usage: [PIP=pip] bash docker/install_gpu.sh [REQUIREMENTS_DIR]
set -euo pipefail
REQ=${1:-requirements}
PIP=${PIP:-pip}
$PIP install -r "$REQ/gpu.txt"
$PIP install --no-build-isolation -r "$REQ/gpu-post.txt"
for f in "$REQ/nodeps.txt" "$REQ/eval-nodeps.txt"; do
  if [ -f "$f" ]; then $PIP install --no-deps -r "$f"; fi
done
