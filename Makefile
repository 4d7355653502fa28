# `make demo`: set up the CPU stack and run the offline demo. `make test`: set up and run the test suite.
PY := .venv/bin/python
# Tests that read the real data samples take their folder from REST_TEST_DATA (.ci/run sets it) and skip without it.

.PHONY: setup demo test test-fast lint models clean

setup:
	@bash scripts/setup_env.sh

demo: setup
	$(PY) -m rest.main

test: setup
	$(PY) -m pytest -q -p no:cacheprovider tests

test-fast: setup
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow" tests

models: setup
	$(PY) -m rest.models build tiny-qwen3 smollm2-135m-instruct

clean:
	rm -rf runs outputs wandb .pytest_cache

# ---- benchmarks (README "Performance"): scripts that print figures and rewrite their section of bench/RESULTS.md
.PHONY: bench bench-quick
BENCH_SCRIPTS := entropy_memory rollout weight_sync scaling rl_step_vs_trl packing ablation

bench: setup  # all of them in turn, full size (~2 h on 2 cores); run one with: .venv/bin/python bench/NAME.py
	@for b in $(BENCH_SCRIPTS); do echo "== bench/$$b.py"; $(PY) bench/$$b.py || exit 1; done

bench-quick: setup  # every script at its smallest size: checks they run (figures too small to quote)
	@for b in $(BENCH_SCRIPTS); do echo "== bench/$$b.py --quick"; $(PY) bench/$$b.py --quick || exit 1; done

# ---- GPU smoke check (tests/gpu, `pytest -m gpu`; scripts/gpu_smoke.sh). NOT YET RUN ON A GPU: no GPU has been
# lent to us; only its CPU rehearsal has run. On a CUDA machine with torch + transformers (no Ray/vLLM/internet
# needed): `make gpu-smoke` installs the carried wheelhouse offline and runs the GPU tests. Here:
# `make gpu-smoke GPU_SMOKE=wheels` builds that wheelhouse (build/gpu-smoke-wheels, ~4 MB), and
# `make gpu-smoke GPU_SMOKE=rehearse` runs the same install and tests without a GPU (CUDA cases skip).
.PHONY: gpu-smoke
GPU_SMOKE ?= run

gpu-smoke:
	bash scripts/gpu_smoke.sh $(GPU_SMOKE)

# ---- recipes, cluster, images (README "Running on a cluster")
.PHONY: dry-run dry-run-all test-recipes test-ray-job ray-job lint-docker docker-build docker-build-cpu setup-gpu
RECIPE ?= tiny_cpu
ALGORITHM ?= rest
RAY_ADDRESS ?= http://127.0.0.1:8265
ARGS ?=
PYTHON_GPU ?= python3

dry-run: setup  # validate one recipe and print its resource plan: make dry-run RECIPE=bfcl_qwen3_8b
	$(PY) -m rest.main +recipe=$(RECIPE) algorithm=$(ALGORITHM) dry_run=true $(ARGS)

dry-run-all: setup  # every recipe x algorithm resolves, validates and dry-runs (no Ray)
	$(PY) -m pytest -q -p no:cacheprovider tests/recipes/test_recipes.py

test-recipes: setup  # recipes, the Docker lint, and the Ray job submission on a local head (slow)
	$(PY) -m pytest -q -p no:cacheprovider tests/recipes

test-ray-job: setup
	$(PY) -m pytest -q -p no:cacheprovider tests/recipes/test_ray_job.py

ray-job:  # submit to a running cluster: make ray-job RAY_ADDRESS=http://HEAD:8265 RECIPE=bfcl_qwen3_8b ARGS=...
	ray job submit --address $(RAY_ADDRESS) --runtime-env conf/runtime_env.yaml -- \
		python -m rest.main +recipe=$(RECIPE) algorithm=$(ALGORITHM) trainer.ray_address=auto $(ARGS)

lint-docker: setup
	.venv/bin/hadolint --failure-threshold info docker/Dockerfile docker/Dockerfile.cpu

docker-build:  # needs a Docker engine with BuildKit (none on our CI machines)
	docker build -f docker/Dockerfile -t rest:gpu .

docker-build-cpu:
	docker build -f docker/Dockerfile.cpu -t rest:cpu .

setup-gpu:  # the GPU stack into the current Python environment (a cluster's venv/conda env), as the image does
	PIP="$(PYTHON_GPU) -m pip" bash docker/install_gpu.sh
	$(PYTHON_GPU) -m pip install --no-deps --no-build-isolation -e .
