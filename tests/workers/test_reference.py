"""The frozen reference of a KL run (rest.workers.reference) on two real FSDP2 ranks over gloo, a 1-layer random
Qwen3, rank-0 loading; no Ray. Before any update pi_ref == pi; the reference has no trainable parameter and no
optimizer state; updates move the policy away from it (actor/kl_loss > 0) and never move the reference."""

import torch

from rest.config.load import load_config
from tests.workers.test_nonfinite import batch, run_two_ranks, tiny_model
from rest.workers.metrics import reduce_metrics


def rank_main(rank, model_path, port, results):
    from rest.workers.fsdp_actor import FSDPActorWorker

    cfg = load_config(["+recipe=tiny_cpu", "algorithm=grpo", "algorithm.kl_coef=0.5", "actor.lr=1e-2"])
    worker = FSDPActorWorker(cfg, rank, 2, "127.0.0.1", port)
    worker.init_model(model_path, total_steps=2)
    ref_params = list(worker.ref.module.parameters())
    optimized = {id(p) for group in worker.actor.optimizer.param_groups for p in group["params"]}
    frozen = (all(not p.requires_grad for p in ref_params) and not worker.ref.module.training
              and not optimized & {id(p) for p in ref_params})

    data = batch(nan=False)
    data.update(worker.compute_log_prob(data))
    data.update(worker.compute_ref_log_prob(data))
    start_equal = torch.allclose(data["old_log_prob"], data["ref_log_prob"], atol=1e-6)
    first = reduce_metrics([worker.update_policy(data).metrics])["actor/kl_loss"]  # scored at the start weights
    second = reduce_metrics([worker.update_policy(data).metrics])["actor/kl_loss"]  # after one optimizer step
    ref_after = worker.compute_ref_log_prob(data)["ref_log_prob"]
    policy_after = worker.compute_log_prob(data)["old_log_prob"]
    mask = data["response_mask"].bool()
    results.put((rank, frozen, len(worker.actor.optimizer.state) > 0, start_equal, first, second,
                 bool(torch.equal(ref_after, data["ref_log_prob"])),
                 float((policy_after - data["ref_log_prob"]).abs()[mask].max())))
    worker.shutdown()


def test_the_reference_is_the_frozen_start_model(tmp_path):
    tiny_model(tmp_path / "model")
    outcome = run_two_ranks(rank_main, tmp_path / "model")
    for rank, frozen, stepped, start_equal, first, second, ref_unchanged, moved in outcome:
        assert frozen and stepped, f"rank {rank}: the reference must be frozen, outside the optimizer"
        assert start_equal and abs(first) < 1e-6, f"rank {rank}: pi != pi_ref before any update ({first})"
        assert second > 1e-6 and moved > 1e-4, f"rank {rank}: the policy did not move from the reference"
        assert ref_unchanged, f"rank {rank}: an update changed the reference"
