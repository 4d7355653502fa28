"""`FSDPActorWorker.update_policy`'s PPO schedule and metric reductions over a scripted engine (no model, no
process group): epochs x mini-batches x micro-batches, the injected loss, and each metric by hand."""

import pytest
import torch
from tensordict import TensorDict

from rest.config.load import load_config
from rest.trainer.batch import build_batch
from rest.workers.fsdp_actor import FSDPActorWorker
from rest.workers.metrics import reduce_metrics

ADVANTAGE = [1.0, -2.0, 0.5, 3.0]
ENTROPY = [1.0, 2.0, 3.0, 4.0]


class ScriptedEngine:
    """One rank. The forward returns the batch's `scripted_log_prob` and a per-row entropy; micro-batches are
    `order` split in `size`; optimizer steps report the scripted grad norms and whether all ranks stepped."""

    world_size = 1

    def __init__(self, grad_norms, stepped, order=None):
        self.grad_norms, self.stepped, self.order = list(grad_norms), list(stepped), order
        self.finite_seen, self.micro_rows = [], []

    def train_mode(self):
        pass

    def global_sum(self, value):
        return value.detach().double().clone()

    def micro_batches(self, batch, size):
        order = self.order or list(range(batch.batch_size[0]))
        return [order[i : i + size] for i in range(0, len(order), size)]

    def forward_backward(self, micro, loss_fn):
        self.micro_rows.append(micro["row"].tolist())
        log_prob = micro["scripted_log_prob"].clone().requires_grad_(True)
        loss, metrics = loss_fn(log_prob, micro)
        entropy = micro["row_entropy"][:, None].expand_as(log_prob) * micro["response_mask"]
        return loss.detach(), TensorDict({"log_prob": log_prob.detach(), "entropy": entropy},
                                         batch_size=micro.batch_size), metrics

    def optimizer_step(self, local_finite):
        self.finite_seen.append(local_finite)
        return self.grad_norms.pop(0), self.stepped.pop(0)

    def lr_step(self):
        return 1e-6


def worker(engine, *overrides):
    cfg = load_config(["+recipe=tiny_cpu", "algorithm=grpo", "algorithm.loss_agg_mode=token-mean",
                       "data.train_batch_size=2", "rollout.n=2", *overrides])
    w = FSDPActorWorker.__new__(FSDPActorWorker)  # no process group: the engine is scripted
    w.cfg, w.rank, w.world_size, w.actor, w.ref = cfg, 0, 1, engine, None
    return w


def batch(with_old=True):
    """4 rows with 2, 1, 3, 1 response tokens; advantages 1, -2, 0.5, 3; log-probs -0.1 * (row + 1)."""
    data = build_batch([[1]] * 4, [[5, 6], [7], [8, 9, 10], [11]], [[-1.0] * 2, [-1.0], [-1.0] * 3, [-1.0]], 0)
    mask = data["response_mask"].float()
    data["advantages"] = torch.tensor(ADVANTAGE)[:, None] * mask
    data["scripted_log_prob"] = -0.1 * torch.arange(1.0, 5.0)[:, None] * mask
    data["row_entropy"] = torch.tensor(ENTROPY)
    data["row"] = torch.arange(4)
    if with_old:
        data["old_log_prob"] = data["scripted_log_prob"].clone()  # on-policy: r = 1, the loss is -A
    return data


def test_two_epochs_of_two_mini_batches_report_each_metric_by_its_reduction():
    """Mini-batch 1 (rows 0, 1; 3 tokens): L = -(1 * 2 - 2 * 1) / 3 = 0; mini-batch 2 (rows 2, 3; 4 tokens):
    L = -(0.5 * 3 + 3 * 1) / 4 = -1.125. pg_loss is the mean over the 4 optimizer steps of the mini-batch loss
    (-0.5625), not the mean of the micro-batch shares (-0.28125); entropy the mean over micro-batches."""
    engine = ScriptedEngine(grad_norms=[1.0, 2.0, 3.0, 6.0], stepped=[True, False, True, True])
    update = worker(engine, "actor.ppo_mini_batch_size=1", "actor.ppo_micro_batch_size=1",
                    "actor.ppo_epochs=2").update_policy(batch())
    assert engine.micro_rows == [[0], [1], [2], [3]] * 2 and engine.finite_seen == [True] * 4
    assert update.batch is None
    metrics = reduce_metrics([update.metrics])
    assert metrics["actor/pg_loss"] == pytest.approx((0.0 - 1.125) / 2)
    assert metrics["actor/entropy"] == pytest.approx(sum(ENTROPY) / 4)
    assert metrics["actor/grad_norm"] == pytest.approx(3.0) and metrics["actor/skipped_steps"] == 1.0
    assert metrics["actor/lr"] == 1e-6
    assert metrics["actor/ppo_kl"] == 0.0 and metrics["actor/pg_clipfrac"] == 0.0
    assert "actor/kl_loss" not in metrics


def test_a_replicated_metric_is_not_multiplied_by_the_ranks():
    update = worker(ScriptedEngine([1.0], [False]), "actor.ppo_micro_batch_size=2").update_policy(batch())
    assert reduce_metrics([update.metrics] * 2)["actor/skipped_steps"] == 1.0  # two ranks, one skipped step


def test_fused_the_update_returns_its_first_forward_as_the_old_log_prob():
    engine = ScriptedEngine([1.0], [True], order=[2, 0, 3, 1])  # token-budget micro-batches need not be in order
    update = worker(engine, "actor.ppo_micro_batch_size=2").update_policy(batch(with_old=False),
                                                                          fused_old_log_prob=True)
    assert engine.micro_rows == [[2, 0], [3, 1]]
    assert torch.equal(update.batch["old_log_prob"], batch()["scripted_log_prob"])
    # pi_old = pi (detached): the ratio is 1, the loss -A over all 7 tokens
    assert reduce_metrics([update.metrics])["actor/pg_loss"] == pytest.approx(-(2 - 2 + 1.5 + 3) / 7)


def test_the_old_log_prob_source_is_checked_against_the_schedule():
    with pytest.raises(ValueError, match="fused_old_log_prob needs one PPO epoch over one mini-batch"):
        worker(ScriptedEngine([], []), "actor.ppo_epochs=2").update_policy(batch(False), fused_old_log_prob=True)
    with pytest.raises(ValueError, match="needs the batch's old_log_prob"):
        worker(ScriptedEngine([], []), "actor.ppo_micro_batch_size=2").update_policy(batch(with_old=False))
