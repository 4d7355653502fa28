"""Built-in models for tests/models: one session-scoped, throwaway model cache, so the tests also pass (and
exercise the build path) on a fresh machine. Set REST_TEST_MODEL_CACHE to a directory to reuse builds
between runs instead."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    cache = os.environ.get("REST_TEST_MODEL_CACHE") or str(tmp_path_factory.mktemp("rest-model-cache"))
    previous = os.environ.get("REST_MODEL_CACHE")
    os.environ["REST_MODEL_CACHE"] = cache
    yield cache
    if previous is None:
        os.environ.pop("REST_MODEL_CACHE", None)
    else:
        os.environ["REST_MODEL_CACHE"] = previous


@pytest.fixture(scope="session")
def qwen3_tokenizer(model_cache):
    from rest.models import load_tokenizer

    return load_tokenizer("qwen3-tokenizer")


@pytest.fixture(scope="session")
def tiny_qwen3_dir(model_cache):
    from rest.models import resolve_model_path

    return resolve_model_path("tiny-qwen3")


@pytest.fixture(scope="session")
def smollm2_dir(model_cache):
    from rest.models import resolve_model_path

    return resolve_model_path("smollm2-135m-instruct")
