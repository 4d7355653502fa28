"""Validation rejects, before any actor starts, what the GPU paths cannot run (issue 14): each case names the
key and what to change. The configs are the GPU recipes on a declared node (trainer.cpus_per_node)."""

import pytest

from rest.config.load import load_config
from rest.config.validate import ConfigError

GPU_NODE = "trainer.cpus_per_node=32"


def error_of(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as error:
        load_config(overrides)
    return str(error.value)


def test_a_kl_penalty_builds_a_reference_and_checks_its_estimator():
    cfg = load_config(["+recipe=tiny_cpu", "algorithm=grpo", "algorithm.kl_coef=0.04"])  # GRPO paper's beta
    assert (cfg.algorithm.kl_coef, cfg.algorithm.kl_estimator) == (0.04, "low_var_kl")
    assert load_config(["+recipe=tiny_cpu", "algorithm.kl_coef=0.01", "algorithm.kl_estimator=k3+"])
    message = error_of(["+recipe=tiny_cpu", "algorithm.kl_coef=0.01", "algorithm.kl_estimator=k4"])
    assert "algorithm.kl_estimator" in message and "k4" in message and "low_var_kl" in message
    assert "algorithm.kl_coef must be >= 0" in error_of(["+recipe=tiny_cpu", "algorithm.kl_coef=-0.1"])


def test_cpu_offload_needs_cuda():
    message = error_of(["+recipe=tiny_cpu", "actor.cpu_offload=true"])
    assert "actor.cpu_offload" in message and "trainer.device=cuda" in message
    assert load_config(["+recipe=bfcl_qwen3_8b", GPU_NODE, "actor.cpu_offload=true"]).actor.cpu_offload


def test_flash_attention_needs_16_bit_compute():
    message = error_of(["+recipe=bfcl_qwen3_1.7b", GPU_NODE, "actor.mixed_precision=none"])
    assert "flash_attention_2" in message and "float32" in message
    # fp32 master weights with bf16 compute is the recipes' setting and is fine; so is sdpa in fp32
    load_config(["+recipe=bfcl_qwen3_1.7b", GPU_NODE])
    load_config(["+recipe=bfcl_qwen3_1.7b", GPU_NODE, "actor.mixed_precision=none", "model.attn_implementation=sdpa"])
    assert "trainer.device=cuda" in error_of(["+recipe=tiny_cpu", "model.attn_implementation=flash_attention_2"])


@pytest.mark.parametrize("recipe, cpus", [("bfcl_qwen3_1.7b", 32), ("bfcl_qwen3_8b", 24), ("bfcl_qwen3_14b", 20)])
def test_cpus_are_counted_on_cuda(recipe, cpus):
    # 4 actor ranks x 4 CPUs + rollout workers x 4 CPUs (4, 2, 1 of them)
    message = error_of([f"+recipe={recipe}", "trainer.cpus_per_node=16"])
    assert f"need {cpus} CPUs" in message and "trainer.cpus_per_node" in message
    load_config([f"+recipe={recipe}", f"trainer.cpus_per_node={cpus}"])


def test_one_bundle_must_fit_one_node():
    message = error_of(["+recipe=bfcl_qwen3_8b", "trainer.cpus_per_node=3", "trainer.nnodes=8",
                        "trainer.ray_address=auto"])
    assert "bundle needs 4 CPUs" in message


def test_a_tensor_parallel_engine_lies_on_one_node():
    message = error_of(["+recipe=bfcl_qwen3_14b", GPU_NODE, "trainer.nnodes=2", "trainer.gpus_per_node=2",
                        "trainer.ray_address=auto", "actor.num_workers=2", "actor.ppo_micro_batch_size=4"])
    assert "rollout.tensor_parallel_size x rollout.gpus_per_worker = 4" in message


def test_colocated_is_validated_as_it_is_booked():
    # 4 actor GPUs shared with 4 rollout workers fit 4 GPUs (they were booked as 8 before)
    cfg = load_config(["+recipe=bfcl_qwen3_4b", GPU_NODE, "trainer.placement=colocated", "trainer.gpus_per_node=4",
                       "rollout.gpu_memory_utilization=0.4"])
    assert cfg.trainer.placement == "colocated"
    assert "gpu_memory_utilization" in error_of(["+recipe=bfcl_qwen3_4b", GPU_NODE, "trainer.placement=colocated",
                                                 "trainer.gpus_per_node=4"])  # the recipe's 0.85 of a shared GPU
    message = error_of(["+recipe=bfcl_qwen3_8b", GPU_NODE, "trainer.placement=colocated"])  # TP 2
    assert "rollout.tensor_parallel_size = 1" in message
    assert "need 8 GPUs" in error_of(["+recipe=bfcl_qwen3_4b", GPU_NODE, "trainer.placement=colocated",
                                      "trainer.gpus_per_node=4", "actor.num_workers=8", "rollout.num_workers=4",
                                      "actor.cpus_per_worker=1", "rollout.gpu_memory_utilization=0.4"])


def test_tensor_parallel_needs_the_vllm_backend():
    message = error_of(["+recipe=tiny_cpu", "rollout.tensor_parallel_size=2", "rollout.backend=hf"])
    assert "rollout.backend=vllm" in message


def test_engine_process_is_a_choice():
    assert "rollout.engine_process" in error_of(["+recipe=tiny_cpu", "rollout.engine_process=thread"])
