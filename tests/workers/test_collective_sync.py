"""The collective weight sync (workers/collective_sync.py) without Ray or vLLM: the bucket plan, and a real gloo
group of one sender and two receivers (threads of this process, each its own group member)."""

import socket
import threading

import pytest
import torch

from rest.config.load import load_config
from rest.config.validate import ConfigError
from rest.workers.collective_sync import (
    ALIGN,
    SyncGroup,
    plan_buckets,
    receive_buckets,
    send_buckets,
    tensor_manifest,
)
from rest.workers.weight_sync import distinct_tensors
from tests.workers.test_rollout_tp import hf_greedy


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


# ---------------------------------------------------------------- slow: the real engine (and the real actor)
PROMPTS = [[9707, 11, 1879, 0], [151644, 872, 198, 3838, 374], [40, 1079, 264, 5392], [785, 3974, 13876, 38835]]


def prefix_equal(got, expected):
    """vLLM may stop early (EOS); up to there it must be transformers' greedy output."""
    return got == [e[: len(g)] for g, e in zip(got, expected)] and all(got)


@pytest.fixture(scope="module", params=["inline", "separate"])
def collective_stack(request, tmp_path_factory):
    """2 FSDP2 ranks + 1 vLLM rollout worker with rollout.weight_sync=collective, the engine core in the rollout
    actor (the CPU default) or in its own process (the GPU default)."""
    import ray

    from rest.models.cache import resolve_model_path
    from rest.trainer.cluster import create_worker_groups, start_ray

    # lr 1e-3: one update must change the greedy output for "the engine follows the actor" to mean anything
    cfg = load_config(["+recipe=tiny_cpu", "actor.lr=1e-3", f"trainer.run_dir={tmp_path_factory.mktemp('run')}",
                       f"rollout.engine_process={request.param}", "rollout.weight_sync=collective",
                       f"rollout.weight_sync_dir={tmp_path_factory.mktemp('shm')}"])
    start_ray(cfg)
    groups = create_worker_groups(cfg, str(resolve_model_path(cfg.model.path)), total_steps=1)
    yield cfg, groups
    groups.actor.shutdown()
    ray.shutdown()


@pytest.mark.slow
def test_collective_sync_makes_the_engine_follow_the_actor(collective_stack, tmp_path):
    """After an FSDP2 update and a collective sync, vLLM's greedy output is transformers' greedy output with the
    actor's saved weights; an object-store sync of the same weights afterwards changes nothing."""
    from transformers import AutoModelForCausalLM

    from rest.workers.collective_sync import CollectiveWeightSync
    from tests.workers.test_weight_sync import one_update

    cfg, groups = collective_stack

    def greedy():
        return [g[0].token_ids for g in groups.rollout.generate(PROMPTS, [[0]] * len(PROMPTS), 12, True)]

    before = greedy()
    one_update(cfg, groups, PROMPTS)  # the same seeded update as the object-store tests

    sync = CollectiveWeightSync(cfg.trainer.device, cfg.rollout.dtype, cfg.rollout.tensor_parallel_size,
                                cfg.rollout.weight_sync_bucket_mb)
    sent = sync.sync(groups.actor, groups.rollout)
    after = greedy()

    groups.actor.save_hf(str(tmp_path))
    model = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert prefix_equal(after, hf_greedy(model, PROMPTS))
    assert after != before  # the update changed the policy, and vLLM follows it
    n_params = sum(p.numel() for p in model.parameters())  # the tied head counted once, as it is sent once
    assert n_params * 4 <= sent < n_params * 4 + 64 * 64  # fp32, plus the alignment padding
    assert not any(__import__("os").scandir(cfg.rollout.weight_sync_dir))  # no files on this path

    groups.rollout.load_weights(groups.actor.call_async("export_weights", cfg.rollout.dtype))  # object store
    assert greedy() == after
    assert sync.sync(groups.actor, groups.rollout) == sent  # the group is formed once and serves again
    assert greedy() == after


@pytest.mark.slow
def test_tp2_engine_workers_each_receive_the_broadcast(tmp_path):
    """A TP 2 engine (two vLLM worker processes, group ranks 1 and 2) built in this process; the sender is a
    thread of this process holding transformers' perturbed weights. No Ray, no FSDP."""
    from tests.workers.test_rollout_tp import tp2_worker_and_moved_model

    worker, greedy, before, model = tp2_worker_and_moved_model(tmp_path, PROMPTS, "rollout.weight_sync=collective")
    entries = distinct_tensors(model.state_dict(), aliases={"lm_head.weight": "model.embed_tokens.weight"})
    manifest = tensor_manifest(entries, torch.float32)
    bucket = 4 << 20  # several buckets for the 80 MB model
    port, sent = free_port(), []

    def sender():
        group = SyncGroup("127.0.0.1", port, 0, 3, "gloo", timeout_s=120)
        sent.append(send_buckets(group, [t for _, t in entries], manifest, bucket))

    thread = threading.Thread(target=sender)
    thread.start()
    worker.join_weight_sync("127.0.0.1", port, 3, "gloo", manifest, bucket)
    worker.receive_weights()
    thread.join(120)
    after = greedy()
    assert sent and len(plan_buckets(manifest, bucket)) > 1
    assert prefix_equal(after, hf_greedy(model, PROMPTS))
    assert after != before
    assert not any(tmp_path.iterdir())
