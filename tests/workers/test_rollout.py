"""The rollout worker's pure parts: engine mode, context, executor, and prompts that outgrow the context."""

import shutil
from collections import namedtuple

import pytest

from rest.config.load import load_config
from rest.config.plan import engine_context, engine_process
from rest.workers.rollout import (PROMPT_OVERFLOW, RolloutWorker, Sample, check_sync_space, cpu_thread_binding,
                             engines_per_node, executor_backend, split_overflow)


def test_engine_process_auto_follows_the_device():
    assert engine_process(load_config(["+recipe=tiny_cpu"])) == "inline"
    assert engine_process(load_config(["+recipe=bfcl_qwen3_8b", "trainer.cpus_per_node=32"])) == "separate"
    assert engine_process(load_config(["+recipe=tiny_cpu", "rollout.engine_process=separate"])) == "separate"


def test_tensor_parallel_engines_use_the_mp_executor():
    assert executor_backend(load_config(["+recipe=tiny_cpu"])) is None
    assert executor_backend(load_config(["+recipe=tiny_cpu", "rollout.tensor_parallel_size=2"])) == "mp"


def test_the_context_fits_the_longest_prompt_and_response_of_training_and_validation():
    assert engine_context(load_config(["+recipe=tiny_cpu"])) == 384 + 32
    cfg = load_config(["+recipe=tiny_cpu", "validation.max_prompt_length=1000", "validation.max_response_length=16"])
    assert engine_context(cfg) == 1000 + 32


def test_cpu_tp_ranks_get_contiguous_core_groups():
    assert cpu_thread_binding([0, 1], 2) == "0|1"
    assert cpu_thread_binding([5, 2, 3, 4, 6], 2) == "2,3,4|5,6"
    assert cpu_thread_binding([0], 2) == "nobind"


def test_a_prompt_fits_with_its_whole_response_budget():
    assert split_overflow([[1] * 6, [1] * 7, []], max_tokens=4, context=10) == [True, False, True]


class ScriptedEngine:
    def __init__(self):
        self.calls = []

    def generate(self, prompts, seeds, max_tokens, greedy):
        self.calls.append(prompts)
        return [[Sample([len(p)], [0.0], "stop") for _ in s] for p, s in zip(prompts, seeds)]


def worker_with(context: int) -> RolloutWorker:
    worker = RolloutWorker.__new__(RolloutWorker)  # no engine start: the dispatch logic only
    worker.context, worker.engine = context, ScriptedEngine()
    return worker


def test_overlong_prompts_are_left_out_and_answered_empty_in_place():
    worker = worker_with(context=8)
    groups = worker.generate([[1] * 3, [1] * 6, [1] * 2], [[0, 1], [2, 3], [4]], max_tokens=4)
    assert worker.engine.calls == [[[1] * 3, [1] * 2]]  # the 6-token prompt + 4 > 8 never reaches the engine
    assert [[s.token_ids for s in g] for g in groups] == [[[3], [3]], [[], []], [[2]]]
    assert [s.finish_reason for s in groups[1]] == [PROMPT_OVERFLOW] * 2
    assert worker.generate([[1] * 9], [[0]], max_tokens=1)[0][0].finish_reason == PROMPT_OVERFLOW
    assert len(worker.engine.calls) == 1  # nothing fits: no engine call at all


def test_a_sync_folder_too_small_for_the_model_fails_at_start(tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.safetensors").write_bytes(b"0" * 4096)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(8192, 6144, 2048))
    with pytest.raises(RuntimeError, match="rollout.weight_sync_dir"):
        check_sync_space(str(tmp_path / "shm"), str(tmp_path / "model"))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(8192, 0, 8192))
    check_sync_space(str(tmp_path / "shm"), str(tmp_path / "model"), copies=2)
    with pytest.raises(RuntimeError, match="x 3 engine"):  # every engine of a node writes its copy at once
        check_sync_space(str(tmp_path / "shm"), str(tmp_path / "model"), copies=3)


def test_engines_per_node():
    assert engines_per_node(load_config(["+recipe=bfcl_qwen3_8b", "trainer.cpus_per_node=32"])) == 2
    assert engines_per_node(load_config(["+recipe=bfcl_qwen3_1.7b", "trainer.cpus_per_node=32"])) == 4
