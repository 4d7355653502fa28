"""The whole config is validated once, before Ray starts; every error names the key."""

import pytest
import ray

from rest.config.load import available, load_config, RECIPES_DIR
from rest.config.validate import ConfigError
from rest.main import main


def error_of(overrides):
    with pytest.raises(ConfigError) as info:
        load_config(overrides)
    return str(info.value)


def test_default_config_is_the_cpu_demo():
    cfg = load_config([])
    assert cfg.trainer.device == "cpu"
    assert cfg.rollout.backend == "vllm"
    assert cfg.actor.num_workers == 2 and cfg.rollout.num_workers == 1
    assert cfg.algorithm.name == "rest"
    assert cfg.trainer.run_dir == "runs/demo"


def test_recipe_and_algorithm_compose():
    cfg = load_config(["+recipe=tiny_cpu", "algorithm=dapo", "trainer.total_steps=5"])
    assert cfg.algorithm.name == "dapo"
    assert cfg.algorithm.clip_high == pytest.approx(0.28)
    assert cfg.trainer.total_steps == 5


def test_unknown_key_is_named():
    assert "actor.learning_rate" in error_of(["actor.learning_rate=1e-5"])


def test_wrong_type_is_named():
    assert "actor.lr" in error_of(["actor.lr=fast"])


def test_unknown_recipe_lists_available():
    message = error_of(["+recipe=nope"])
    assert "nope" in message and "tiny_cpu" in message
    assert "tiny_cpu" in available(RECIPES_DIR)


def test_unknown_algorithm_lists_available():
    message = error_of(["algorithm=ppo2"])
    assert "ppo2" in message and "grpo" in message


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["actor.ppo_micro_batch_size=3"], "actor.ppo_micro_batch_size"),
        (["data.train_batch_size=6", "actor.ppo_mini_batch_size=4"], "actor.ppo_mini_batch_size"),
        (["actor.num_workers=3", "actor.cpus_per_worker=0.25"], "actor.num_workers"),
        (["actor.num_workers=8", "actor.cpus_per_worker=1", "actor.ppo_micro_batch_size=1"], "CPUs"),
        (["trainer.device=tpu"], "trainer.device"),
        (["rollout.backend=sglang"], "rollout.backend"),
        (["trainer.device=cuda"], "trainer.gpus_per_node"),
        (["algorithm.clip_low=1.5"], "algorithm.clip_low"),
        (["data.source=rlla"], "data.path"),
    ],
)
def test_impossible_combinations_are_named(overrides, key):
    assert key in error_of(overrides)


def test_config_errors_stop_before_ray_starts(capsys):
    assert not ray.is_initialized()
    assert main(["actor.ppo_micro_batch_size=3"]) == 2
    assert "actor.ppo_micro_batch_size" in capsys.readouterr().err
    assert not ray.is_initialized()


def test_dry_run_prints_plan_without_ray(capsys):
    assert main(["+recipe=tiny_cpu", "dry_run=true"]) == 0
    out = capsys.readouterr().out
    assert "2 FSDP2 ranks" in out and "vllm" in out
    assert not ray.is_initialized()


def test_old_log_prob_forward_is_fused_only_for_an_exactly_on_policy_update():
    from rest.config.load import load_config
    from rest.trainer.phases import fuses_old_log_prob

    def fused(*overrides):
        return fuses_old_log_prob(load_config(["+recipe=tiny_cpu", *overrides]))

    assert fused("algorithm=grpo", "actor.ppo_mini_batch_size=4")
    assert fused("algorithm=rest_static", "actor.ppo_mini_batch_size=4")  # static weights need no entropy
    assert not fused("algorithm=grpo")  # two mini-batches: the second is scored after an optimizer step
    assert not fused("algorithm=grpo", "actor.ppo_mini_batch_size=4", "actor.ppo_epochs=2")
    assert not fused("algorithm=rest", "actor.ppo_mini_batch_size=4")  # entropy weights need the old entropy
    assert not fused("algorithm=rest", "algorithm.region_weights.mode=variance_bound", "actor.ppo_mini_batch_size=4")
    assert not fused("algorithm=grpo", "actor.ppo_mini_batch_size=4", "actor.old_log_prob=recompute")


def test_old_log_prob_mode_is_checked():
    assert "actor.old_log_prob" in error_of(["actor.old_log_prob=sometimes"])


def test_rollout_threads_default_to_the_machine_cores_shared_by_the_rollout_workers():
    import os

    from rest.workers.rollout import rollout_threads

    cores = len(os.sched_getaffinity(0))
    assert rollout_threads(load_config([])) == cores
    assert rollout_threads(load_config(["rollout.num_threads=3"])) == 3
    assert rollout_threads(load_config(["rollout.num_workers=2", "rollout.cpus_per_worker=0.5"])) == max(1, cores // 2)
    assert "rollout.num_threads" in error_of(["rollout.num_threads=-1"])
