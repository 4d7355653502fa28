"""resolve_model_path: directories pass through, built-ins are cached, unknown names fail clearly."""

from __future__ import annotations

import multiprocessing

import pytest

from rest.models import BUILTIN_MODELS, model_cache_dir, resolve_model_path
from rest.models.cache import BuiltinModel


def test_existing_directory_is_returned_as_is(tmp_path):
    assert resolve_model_path(tmp_path) == tmp_path
    assert resolve_model_path(str(tmp_path)) == tmp_path


def test_builtin_is_cached_under_rest_model_cache(tiny_qwen3_dir, model_cache):
    assert tiny_qwen3_dir.parent == model_cache_dir() and str(model_cache_dir()) == model_cache
    assert resolve_model_path("tiny-qwen3") == tiny_qwen3_dir
    assert (tiny_qwen3_dir / "config.json").is_file() and (tiny_qwen3_dir / "tokenizer.json").is_file()
    assert not [p for p in model_cache_dir().iterdir() if ".building-" in p.name]


def test_unknown_name_lists_builtins():
    with pytest.raises(ValueError, match="tiny-qwen3") as error:
        resolve_model_path("no-such-model")
    assert "smollm2-135m-instruct" in str(error.value)


def test_missing_directory_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model_path(str(tmp_path / "missing"))


def test_hub_failure_names_the_id(monkeypatch):
    import huggingface_hub

    def offline(repo_id, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(RuntimeError, match="'someone/some-model'"):
        resolve_model_path("someone/some-model")


def _slow_build(out_dir):
    import time

    (out_dir / "started").write_text("x")
    time.sleep(0.5)
    (out_dir / "config.json").write_text("{}")


def _resolve(name, cache, queue):
    import os

    os.environ["REST_MODEL_CACHE"] = cache
    queue.put(str(resolve_model_path(name)))


def test_concurrent_builds_build_once(tmp_path, monkeypatch):
    monkeypatch.setattr(BUILTIN_MODELS, "_entries", {**BUILTIN_MODELS._entries, "slow": BuiltinModel(1, _slow_build)})
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_resolve, args=("slow", str(tmp_path), queue)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    paths = {queue.get(timeout=5) for _ in workers}
    assert paths == {str(tmp_path / "slow-v1")}
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["slow-v1"]
