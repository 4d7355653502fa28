"""The collective weight sync (workers/collective_sync.py) without Ray or vLLM: the bucket plan, and a real gloo
group of one sender and two receivers (threads of this process, each its own group member)."""

import socket
import threading

import pytest
import torch

from rest.config.load import load_config
from rest.config.validate import ConfigError
from workers.collective_sync import (
    ALIGN,
    SyncGroup,
    plan_buckets,
    receive_buckets,
    send_buckets,
    tensor_manifest,
)
from workers.weight_sync import distinct_tensors


def test_buckets_are_aligned_filled_in_order_and_an_oversized_tensor_travels_alone():
    manifest = [[["a"], "float32", [5]],  # 20 bytes at 0
                [["b"], "bfloat16", [3]],  # 6 bytes at 64 (aligned)
                [["c"], "float32", [40]],  # 160 bytes: does not fit 128 -> a bucket of its own
                [["d"], "float32", [2]]]  # 8 bytes, a new bucket
    assert ALIGN == 64
    assert plan_buckets(manifest, bucket_bytes=128) == [(70, [(0, 0), (1, 64)]), (160, [(2, 0)]), (8, [(3, 0)])]
    assert plan_buckets(manifest, bucket_bytes=1 << 20) == [(320 + 8, [(0, 0), (1, 64), (2, 128), (3, 320)])]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_members(sender, receivers):
    """Run sender(group) and each receiver(group) in a thread of its own, as ranks 0..n of one gloo group."""
    port, world = free_port(), 1 + len(receivers)
    results, errors = [None] * world, []

    def member(rank, fn):
        try:
            results[rank] = fn(SyncGroup("127.0.0.1", port, rank, world, "gloo", timeout_s=30))
        except Exception as error:  # noqa: BLE001 - reported to the test below
            errors.append(error)

    threads = [threading.Thread(target=member, args=(rank, fn)) for rank, fn in enumerate([sender, *receivers])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return results


def test_two_receivers_get_every_name_in_the_rollout_dtype_bucket_by_bucket():
    embed, norm, layer = torch.randn(7, 3), torch.randn(3), torch.randn(50, 4)
    state = {"lm.model.embed_tokens.weight": embed, "lm.model.norm.weight": norm, "lm.model.layers.0.w": layer}
    entries = distinct_tensors(state, "lm.", aliases={"lm_head.weight": "model.embed_tokens.weight"})
    manifest = tensor_manifest(entries, torch.bfloat16)
    bucket = 128  # embed (42 B) + norm (6 B) in one bucket, the layer (400 B) alone
    assert len(plan_buckets(manifest, bucket)) == 2

    def receive(group):
        return [(name, tensor.clone()) for name, tensor in receive_buckets(group, manifest, bucket)]

    sent, *received = run_members(lambda g: send_buckets(g, [t for _, t in entries], manifest, bucket),
                                  [receive, receive])
    assert sent == sum(size for size, _ in plan_buckets(manifest, bucket))
    expected = [("model.embed_tokens.weight", embed), ("lm_head.weight", embed), ("model.norm.weight", norm),
                ("model.layers.0.w", layer)]
    for weights in received:
        assert [name for name, _ in weights] == [name for name, _ in expected]
        for (_, got), (_, want) in zip(weights, expected):
            assert got.dtype == torch.bfloat16 and torch.equal(got, want.to(torch.bfloat16))


def test_a_tensor_that_disagrees_with_the_manifest_is_refused_before_it_is_sent():
    manifest = [[["w"], "float32", [2, 2]]]
    with pytest.raises(ValueError, match="w has shape"):
        send_buckets(None, [torch.zeros(3, 2)], manifest, 1 << 20)  # a non-zero actor rank checks it too


@pytest.mark.parametrize("overrides,field", [
    (["rollout.weight_sync=nccl"], "rollout.weight_sync"),
    (["rollout.weight_sync=collective", "rollout.backend=hf"], "rollout.backend=vllm"),
    (["rollout.weight_sync=collective", "rollout.weight_sync_bucket_mb=0"], "rollout.weight_sync_bucket_mb"),
])
def test_config_rejects_what_the_collective_sync_cannot_serve(overrides, field):
    with pytest.raises(ConfigError, match=field):
        load_config(["+recipe=tiny_cpu", *overrides])


def test_collective_with_colocated_gpus_is_rejected_naming_the_fields():
    from rest.config.validate import check_weight_sync

    cfg = load_config(["+recipe=tiny_cpu", "rollout.weight_sync=collective"])
    cfg.trainer.device, cfg.trainer.placement = "cuda", "colocated"
    with pytest.raises(ConfigError, match="trainer.placement=colocated"):
        check_weight_sync(cfg)
    cfg.trainer.placement = "separate"
    check_weight_sync(cfg)
