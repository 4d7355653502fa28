# `make demo`: set up the CPU stack and run the offline demo. `make test`: set up and run the test suite.
PY := .venv/bin/python
export REST_TEST_DATA ?= $(abspath ../shared/data)

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
