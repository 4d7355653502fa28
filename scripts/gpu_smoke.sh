#!/usr/bin/env bash
# The GPU smoke check: tests/gpu (`pytest -m gpu`) on a CUDA machine that has torch and transformers but no Ray,
# no vLLM and no internet. NOT YET RUN ON A GPU: no GPU was lent to the session that wrote it; only the CPU
# rehearsal below has run.
#
#   bash scripts/gpu_smoke.sh wheels    # here, with a package registry: the wheelhouse build/gpu-smoke-wheels
#                                       # (scripts/gpu_smoke_wheels.txt: pure-Python wheels, well under 64 MiB)
#   bash scripts/gpu_smoke.sh run       # on the GPU machine, with the repo and that folder: install the wheels
#                                       # offline (--no-index --no-deps) into build/gpu-smoke-site, build
#                                       # tiny-qwen3 offline, run `pytest -m gpu tests/gpu`
#   bash scripts/gpu_smoke.sh rehearse  # here, no GPU: `run`'s install and environment with Ray, vLLM and wandb
#                                       # made unimportable and the wheelhouse's packages importable only from
#                                       # the wheelhouse; runs tests/gpu (the CPU cases run, the CUDA ones skip)
#                                       # and collects `-m gpu`
# Extra arguments go to pytest. PYTHON picks the interpreter (default: python3 on the GPU machine, .venv here).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WHEELS=$ROOT/build/gpu-smoke-wheels
SITE=$ROOT/build/gpu-smoke-site
mode=${1:-run}
shift || true

build_wheels() {
  local py=${PYTHON:-.venv/bin/python}
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  local reqs
  reqs=$(grep -v '^#' scripts/gpu_smoke_wheels.txt | grep -v '^antlr4' | grep .)
  # --python-version/--platform: the GPU image's Python 3.12; every one of these is py3-none-any anyway
  # shellcheck disable=SC2086
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 -d "$WHEELS" $reqs
  # antlr4-python3-runtime 4.9.3 (what omegaconf 2.3 pins) is published as an sdist only: build its wheel here
  "$py" -m pip wheel -q --no-deps -w "$WHEELS" "$(grep '^antlr4' scripts/gpu_smoke_wheels.txt)"
  ls -l "$WHEELS"
  du -sh "$WHEELS"
}

install_site() {
  local py=$1
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "no wheels in $WHEELS: run 'bash scripts/gpu_smoke.sh wheels' first" >&2; exit 1; }
  rm -rf "$SITE"
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl
}

# Which versions the check runs with, and where each package comes from (the wheelhouse's from $SITE).
report_env() {
  "$1" - <<'PY'
import importlib, torch, transformers
print(f"python {__import__('sys').version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"cuda {torch.version.cuda}, device {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
for name in ("hydra", "omegaconf", "antlr4", "tensordict", "pyvers"):
    module = importlib.import_module(name)
    print(f"  {name} {getattr(module, '__version__', '?')} from {module.__file__}")
PY
}

run_tests() {
  local py=$1
  shift
  export REST_MODEL_CACHE=${REST_MODEL_CACHE:-$ROOT/build/gpu-smoke-models}
  report_env "$py"
  "$py" -m rest.models build tiny-qwen3
  "$py" -m pytest -p no:cacheprovider -rs "$@"
}

case "$mode" in
  wheels)
    build_wheels
    ;;
  run)
    PY=${PYTHON:-python3}
    "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device here: the GPU tests would only skip (use: scripts/gpu_smoke.sh rehearse)")'
    install_site "$PY"
    export PYTHONPATH=$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}
    run_tests "$PY" -m gpu -v tests/gpu "$@"
    ;;
  rehearse)
    PY=${PYTHON:-.venv/bin/python}
    install_site "$PY"
    # sitecustomize (first on the path): Ray, vLLM, wandb and flash-attn cannot be imported, and the wheelhouse's
    # packages only from $SITE, so anything the GPU machine lacks fails here as it would there
    GUARD=$ROOT/build/gpu-smoke-guard
    mkdir -p "$GUARD"
    cat > "$GUARD/sitecustomize.py" <<PY
import importlib.abc, importlib.machinery, sys
ABSENT = {"ray", "vllm", "wandb", "flash_attn"}
FROM_SITE = {"hydra", "omegaconf", "antlr4", "tensordict", "pyvers", "dashscope"}
for name in ABSENT:  # as if not installed: \`import\` raises ModuleNotFoundError, importlib.util.find_spec gives None
    sys.modules[name] = None
class GpuMachineGuard(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name in FROM_SITE:
            spec = importlib.machinery.PathFinder.find_spec(name, ["$SITE"])
            if spec is None:
                raise ModuleNotFoundError(f"{name} is missing from the wheelhouse", name=name)
            return spec
        return None
sys.meta_path.insert(0, GpuMachineGuard())
PY
    export PYTHONPATH=$GUARD:$SITE:$ROOT
    "$PY" -c 'import ray' 2>/dev/null && { echo "the import guard did not load" >&2; exit 1; }
    run_tests "$PY" -v tests/gpu "$@"
    "$PY" -m pytest -p no:cacheprovider -q --collect-only -m gpu tests/gpu
    ;;
  *)
    echo "usage: bash scripts/gpu_smoke.sh wheels|run|rehearse [pytest args]" >&2
    exit 2
    ;;
esac
