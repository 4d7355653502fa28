"""The FSDP actor's process group: gloo on CPU; on cuda NCCL plus gloo, so that CPU-offloaded gradients can
be clipped (their norm is all-reduced on CPU tensors, which an NCCL-only group refuses)."""

from rest.config.load import load_config
from rest.workers.fsdp_engine import process_group_backend


def test_process_group_backends():
    assert process_group_backend(load_config(["+recipe=tiny_cpu"])) == "gloo"
    gpu = load_config(["+recipe=bfcl_qwen3_8b", "trainer.cpus_per_node=32", "actor.cpu_offload=true"])
    assert process_group_backend(gpu) == "cuda:nccl,cpu:gloo"
