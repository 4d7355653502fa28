"""A non-finite loss or gradient on any rank skips that optimizer step on every rank (no rank steps alone, so
the FSDP shards stay one model), counted in `actor/skipped_steps`. Two real FSDP2 ranks over gloo, a 1-layer
random Qwen3; no Ray."""

import socket

import pytest
import torch
import torch.multiprocessing as mp

from rest.config.load import load_config
from rest.trainer.batch import build_batch
from rest.workers.metrics import reduce_metrics


def tiny_model(path):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=64)
    Qwen3ForCausalLM(config).save_pretrained(path)


def batch(nan: bool):
    """One mini-batch of one rank: 4 sequences (tiny_cpu: 2 prompts x n=4 / 2 ranks)."""
    data = build_batch([[1, 2, 3]] * 4, [[4, 5], [6], [7, 8], [9]], [[-1.0, -1.0], [-1.0], [-1.0, -1.0], [-1.0]], 0)
    data["old_log_prob"] = data["rollout_log_prob"].clone()
    data["advantages"] = torch.full(data["responses"].shape, float("nan") if nan else 1.0)
    return data


def rank_main(rank, model_path, port, results):
    from rest.workers.fsdp_actor import FSDPActorWorker

    cfg = load_config(["+recipe=tiny_cpu", "algorithm=grpo"])
    worker = FSDPActorWorker(cfg, rank, 2, "127.0.0.1", port)
    worker.init_model(model_path, total_steps=2)

    def weights():
        return torch.cat([p.to_local().detach().reshape(-1).clone() for p in worker.actor.module.parameters()])

    before = weights()
    poisoned = reduce_metrics([worker.update_policy(batch(nan=rank == 0)).metrics])  # only rank 0 sees the NaN
    after_poisoned = weights()
    clean = reduce_metrics([worker.update_policy(batch(nan=False)).metrics])
    after_clean = weights()
    results.put((rank, poisoned["actor/skipped_steps"], bool(torch.equal(before, after_poisoned)),
                 clean["actor/skipped_steps"], bool(torch.equal(after_poisoned, after_clean))))
    worker.shutdown()


def run_two_ranks(target, model_dir) -> list:
    """Run `target(rank, model_dir, port, results)` on two spawned processes (one gloo group); their results,
    sorted by rank. Both processes must exit cleanly."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(rank, str(model_dir), port, results)) for rank in (0, 1)]
    for p in procs:
        p.start()
    outcome = sorted(results.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return outcome


def test_a_nan_on_one_rank_skips_the_step_on_every_rank(tmp_path):
    tiny_model(tmp_path / "model")
    outcome = run_two_ranks(rank_main, tmp_path / "model")
    for rank, skipped, unchanged, skipped_clean, unchanged_clean in outcome:
        assert skipped == 1 and unchanged, f"rank {rank} stepped on a NaN loss"
        assert skipped_clean == 0 and not unchanged_clean, f"rank {rank} did not step on a finite loss"
