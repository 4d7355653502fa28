"""The multi-turn keys (rollout.multi_turn.*, data.source=env) validate before anything starts."""

import pytest

from rest.config.load import load_config
from rest.config.validate import ConfigError
from rest.data import load_examples


def error_of(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as error:
        load_config(overrides)
    return str(error.value)


def test_the_recipe_loads_and_its_tasks_fit_the_prompt_budget():
    from rest.data.prompt_set import EnvTaskSet, prompt_sets
    from rest.models.cache import load_tokenizer, resolve_model_path

    cfg = load_config(["+recipe=multiturn_cpu"])
    assert (cfg.data.source, cfg.data.env_name, cfg.rollout.multi_turn.enable) == ("env", "embedded_multiturn", True)
    assert cfg.rollout.multi_turn.max_turns == 3 and cfg.rollout.multi_turn.stop_at_tool_call_close
    assert cfg.trainer.test_freq and cfg.trainer.val_before_train  # held-out success at step 0 and at the end
    train, val, stats = load_examples(cfg.data)
    sizes = (cfg.data.embedded_train_size, cfg.data.embedded_val_size)
    assert (len(train), len(val)) == sizes == (stats.train, stats.val)
    assert not {t.uid for t in train} & {t.uid for t in val}
    train_set, val_set, _ = prompt_sets(cfg, load_tokenizer(resolve_model_path("qwen3-tokenizer")))
    assert isinstance(train_set, EnvTaskSet) and len(train_set) == len(train) and len(val_set) == len(val)
    assert not train_set.dropped_overlong
    assert max(len(p.prompt_ids) for p in train_set.items) <= cfg.data.max_prompt_length


def test_the_gpu_recipe_is_bfcl_qwen3_8b_layout_on_bfcl_class_environments():
    from rest.data.prompt_set import prompt_sets
    from rest.models.cache import load_tokenizer, resolve_model_path

    gpu_node, small = "trainer.cpus_per_node=32", ["data.embedded_train_size=64", "data.embedded_val_size=16"]
    cfg = load_config(["+recipe=multiturn_bfcl_qwen3_8b", gpu_node, *small])
    single = load_config(["+recipe=bfcl_qwen3_8b", gpu_node])
    assert (cfg.data.source, cfg.data.env_name, cfg.data.prompt_format) == ("env", "bfcl_sim", "hermes")
    assert cfg.rollout.multi_turn.enable and cfg.rollout.multi_turn.max_turns > 1 and "task" in cfg.validation.benchmarks
    for section in ("actor", "rollout"):  # the same GPUs, ranks and engines as the single-turn 8B recipe
        for key in ("num_workers", "gpus_per_worker", "cpus_per_worker"):
            assert getattr(getattr(cfg, section), key) == getattr(getattr(single, section), key)
    assert cfg.rollout.tensor_parallel_size == single.rollout.tensor_parallel_size == 2
    assert (cfg.model.path, cfg.trainer.device, cfg.algorithm.name) == ("Qwen/Qwen3-8B", "cuda", "rest")
    train_set, val_set, _ = prompt_sets(cfg, load_tokenizer(resolve_model_path("qwen3-tokenizer")))
    assert len(train_set) == 64 and len(val_set) == 16 and not train_set.dropped_overlong
    assert max(len(p.prompt_ids) for p in train_set.items) <= cfg.data.max_prompt_length


def test_bad_multi_turn_settings_name_the_key():
    assert "data.env_name" in error_of(["+recipe=multiturn_cpu", "data.env_name=nope"])
    assert "go together" in error_of(["+recipe=multiturn_cpu", "rollout.multi_turn.enable=false"])
    assert "go together" in error_of(["+recipe=tiny_cpu", "rollout.multi_turn.enable=true"])
    assert "rollout.multi_turn.max_turns" in error_of(["+recipe=multiturn_cpu", "rollout.multi_turn.max_turns=0"])
    message = error_of(["+recipe=multiturn_cpu", "rollout.multi_turn.max_obs_tokens=192"])
    assert "rollout.multi_turn.max_obs_tokens" in message and "data.max_response_length" in message
    assert "rollout.backend=vllm" in error_of(["+recipe=multiturn_cpu", "rollout.backend=hf"])
