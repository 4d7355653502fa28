"""The dry-run memory plan counts the frozen reference of a KL run: its parameter shards, nothing else."""

import pytest

from rest.config.load import load_config
from rest.config.plan import GIB, MODEL_SHAPES, actor_memory, describe_plan

GPU_8B = ["+recipe=bfcl_qwen3_8b", "trainer.cpus_per_node=32"]


def test_the_reference_adds_its_parameter_shards_to_the_actor_rank():
    base = load_config(GPU_8B)
    kl = load_config(GPU_8B + ["algorithm.kl_coef=0.04"])
    shape = MODEL_SHAPES["qwen3-8b"]
    without, with_ref = actor_memory(base, shape), actor_memory(kl, shape)
    # P x param bytes / N: 8.19e9 x 4 (fp32 master weights) / 4 ranks = 7.6 GiB
    expected = 8.19e9 * 4 / kl.actor.num_workers
    assert (kl.model.dtype, kl.actor.num_workers) == ("float32", 4)
    assert without.reference == 0.0 and with_ref.reference == pytest.approx(expected)
    assert with_ref.total - without.total == pytest.approx(expected)
    assert with_ref.state == without.state  # no gradients or optimizer state for the reference
    plan = describe_plan(kl)
    assert f"reference shards {expected / GIB:.1f} GiB" in plan and "beta 0.04, low_var_kl" in plan
    assert "reference" not in describe_plan(base)


def test_offloaded_reference_shards_live_in_host_ram():
    kl = load_config(GPU_8B + ["algorithm.kl_coef=0.04", "actor.cpu_offload=true"])
    memory = actor_memory(kl, MODEL_SHAPES["qwen3-8b"])
    assert memory.reference > 0 and memory.total == pytest.approx(memory.gathered + memory.activations + memory.lm_head)
