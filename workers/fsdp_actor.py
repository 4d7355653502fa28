"""The FSDP2 actor worker: one Ray actor per rank, all ranks forming one torch.distributed group.

A thin shell over `rest.workers.fsdp_engine.FSDPEngine` (the sharded policy: forward, forward-backward with an
injected loss, optimizer step, export, save/load). What is PPO lives here: `update_policy` runs the schedule
(PPO epochs over mini-batches, gradient accumulation over micro-batches, one LR step per call) with the loss of
the algorithm registry (`ppo_loss`: `rest.algo.objective.policy_loss` of algorithm.policy_loss and
loss_agg_mode). Each rank sees 1/world of every batch. The loss normaliser of each mini-batch is all-reduced
first, so gradient accumulation over micro-batches and ranks gives exactly the loss of the whole mini-batch.
Metrics carry their reduction (`rest.workers.metrics`). With algorithm.kl_coef > 0 each rank also holds its shard of
the frozen reference policy (a frozen engine, `rest.workers.reference`).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from tensordict import TensorDict
from torch.distributed.device_mesh import init_device_mesh

from rest.algo import objective
from rest.algo.config import AlgorithmConfig
from rest.config.schema import RestConfig
from rest.console import configure_logging
from rest.workers.dispatch import Dispatch, WorkerOutput, register
from rest.workers.fsdp_engine import DTYPES, FSDPEngine, LossFn, process_group_backend
from rest.workers.metrics import Metric


def ppo_loss(algo: AlgorithmConfig, norm_len: int, denominator: torch.Tensor, fused: bool) -> LossFn:
    """The injected loss of one mini-batch: algorithm.policy_loss aggregated by loss_agg_mode over the global
    normaliser `denominator` (so micro-batch losses summed over ranks are the mini-batch's loss). `fused`: the
    update's own forward gives pi_old (log-prob detached), as it precedes the only optimizer step."""

    def loss_fn(log_prob: torch.Tensor, micro: TensorDict) -> tuple[torch.Tensor, dict]:
        old_log_prob = log_prob.detach() if fused else micro["old_log_prob"]
        return objective.policy_loss(
            log_prob, old_log_prob, micro["advantages"], micro["response_mask"], micro.get("token_weights"), algo,
            denominator=denominator.to(log_prob.dtype), norm_len=norm_len,
            is_weights=micro.get("rollout_is_weights"), ref_logprob=micro.get("ref_log_prob"),
        )

    return loss_fn


class FSDPActorWorker:
    def __init__(self, cfg: RestConfig, rank: int, world_size: int, master_addr: str, master_port: int):
        configure_logging(cfg)
        self.cfg = cfg
        self.rank = rank
        os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port))
        torch.set_num_threads(cfg.actor.num_threads)
        self.device = torch.device("cuda", 0) if cfg.trainer.device == "cuda" else torch.device("cpu")
        dist.init_process_group(process_group_backend(cfg), rank=rank, world_size=world_size)
        self.world_size = world_size

    @register(Dispatch.ONE_TO_ALL)
    def init_model(self, model_path: str, total_steps: int) -> None:
        torch.manual_seed(self.cfg.trainer.seed)
        mesh = init_device_mesh(self.device.type, (self.world_size,))
        engine = dict(cfg=self.cfg, model_path=model_path, mesh=mesh, rank=self.rank, world_size=self.world_size,
                      device=self.device)
        self.actor = FSDPEngine(**engine, trainable=True, total_steps=total_steps)
        # pi_ref for algorithm.kl_coef > 0: the start model again, sharded on the same mesh, frozen, no optimizer
        self.ref = FSDPEngine(**engine, trainable=False) if self.cfg.algorithm.kl_coef > 0 else None

    # ---------------------------------------------------------------- compute
    @register(Dispatch.DP_COMPUTE)
    def compute_log_prob(self, batch: TensorDict) -> TensorDict:
        """Old-policy log-prob and entropy of every response token (zeros off the loss mask)."""
        scored = self.actor.infer(batch, self.cfg.actor.logprob_micro_batch_size)
        return TensorDict({"old_log_prob": scored["log_prob"], "entropy": scored["entropy"]},
                          batch_size=batch.batch_size)

    @register(Dispatch.DP_COMPUTE)
    def compute_ref_log_prob(self, batch: TensorDict) -> TensorDict:
        """Reference-policy log-prob of every response token (zeros off the loss mask), for the KL term."""
        if self.ref is None:
            raise RuntimeError("compute_ref_log_prob needs algorithm.kl_coef > 0 (no reference model was built)")
        scored = self.ref.infer(batch, self.cfg.actor.logprob_micro_batch_size)
        return TensorDict({"ref_log_prob": scored["log_prob"]}, batch_size=batch.batch_size)

    @register(Dispatch.DP_COMPUTE)
    def update_policy(self, batch: TensorDict, fused_old_log_prob: bool = False) -> WorkerOutput:
        """PPO epochs over mini-batches; gradient accumulation over micro-batches; one LR step.

        `fused_old_log_prob` (the driver decides it once, `rest.trainer.phases.fuses_old_log_prob`): the batch
        has no old_log_prob; the update is on-policy (one epoch, one mini-batch), so each micro-batch's forward
        runs before the only optimizer step and its log-probs are pi_old's. They come back as the output's
        old_log_prob, for the driver's rollout/actor agreement check."""
        cfg, algo = self.cfg, self.cfg.algorithm
        local_mini = cfg.actor.ppo_mini_batch_size * cfg.rollout.n // self.world_size
        norm_len = algo.loss_norm_len or cfg.data.max_response_length
        if fused_old_log_prob and (cfg.actor.ppo_epochs != 1 or batch.batch_size[0] > local_mini):
            raise ValueError("update_policy with fused_old_log_prob needs one PPO epoch over one mini-batch")
        if not fused_old_log_prob and "old_log_prob" not in batch.keys():
            raise ValueError("update_policy needs the batch's old_log_prob (compute_log_prob) unless fused")
        # per micro-batch on every rank: entropy and the loss's own metrics (clip fractions, KL); once per
        # optimizer step, the same on every rank: the all-reduced mini-batch loss, grad norm, skipped steps
        metrics = {"actor/entropy": Metric("mean"), "actor/pg_loss": Metric("mean", replicated=True),
                   "actor/grad_norm": Metric("mean", replicated=True),
                   "actor/skipped_steps": Metric("sum", replicated=True), "actor/lr": Metric("mean", replicated=True)}
        old_log_prob = torch.zeros(batch["responses"].shape) if fused_old_log_prob else None
        self.actor.train_mode()
        for _ in range(cfg.actor.ppo_epochs):
            for mini in batch.split(local_mini):
                # every rank adds its share of the normaliser: the mini-batch loss is exact across ranks
                denominator = self.actor.global_sum(objective.loss_denominator(
                    mini["response_mask"], mini.get("token_weights"), algo, norm_len=norm_len))
                loss_fn = ppo_loss(algo, norm_len, denominator, fused_old_log_prob)
                mini_loss, finite = torch.zeros((), dtype=torch.float64), True
                for index in self.actor.micro_batches(mini, cfg.actor.ppo_micro_batch_size):
                    loss, scored, loss_metrics = self.actor.forward_backward(mini[torch.tensor(index)], loss_fn)
                    finite = finite and bool(torch.isfinite(loss))
                    mini_loss += loss.double().cpu()
                    mask = mini["response_mask"][index].bool()
                    entropy = scored["entropy"].cpu()
                    metrics["actor/entropy"].add(entropy[mask].mean() if mask.any() else 0.0)
                    for name, value in loss_metrics.items():
                        metrics.setdefault(name, Metric("mean")).add(value)
                    if old_log_prob is not None:
                        old_log_prob[index] = scored["log_prob"].cpu()
                metrics["actor/pg_loss"].add(self.actor.global_sum(mini_loss))
                grad_norm, stepped = self.actor.optimizer_step(finite)
                metrics["actor/grad_norm"].add(grad_norm)
                metrics["actor/skipped_steps"].add(0 if stepped else 1)
        metrics["actor/lr"].add(self.actor.lr_step())
        fused = TensorDict({"old_log_prob": old_log_prob}, batch_size=batch.batch_size) if fused_old_log_prob else None
        return WorkerOutput(fused, metrics)

    # ---------------------------------------------------------------- weights
    @register(Dispatch.ONE_TO_ALL, blocking=False)
    def export_weights(self, dtype: str) -> dict:
        """This rank's shards for the rollout workers (`FSDPEngine.export_weights`). Non-blocking: the group
        call returns every rank's ObjectRef at once, and the rollout workers fetch them from the object store."""
        return self.actor.export_weights(dtype)

    @register(Dispatch.RANK_ZERO)
    def weight_sync_manifest(self, dtype: str) -> tuple[tuple[str, int], list]:
        """rollout.weight_sync=collective: rank 0's rendezvous address and the manifest of what a sync sends."""
        from rest.workers.collective_sync import rendezvous_address, tensor_manifest

        return rendezvous_address(), tensor_manifest(self.actor.weight_entries(), DTYPES[dtype])

    @register(Dispatch.ONE_TO_ALL)
    def join_weight_sync(self, host: str, port: int, world_size: int, backend: str, bucket_bytes: int,
                         dtype: str) -> None:
        """Rank 0 joins the weight-sync group (`rest.workers.collective_sync`); every rank keeps the bucket plan."""
        from rest.workers.collective_sync import WeightBroadcaster

        if getattr(self, "broadcaster", None) is not None:
            self.broadcaster.close()
        self.broadcaster = WeightBroadcaster(self.rank, host, port, world_size, backend, bucket_bytes, DTYPES[dtype])

    @register(Dispatch.ONE_TO_ALL)
    def broadcast_weights(self) -> int:
        """Every rank gathers each full tensor in turn; rank 0 broadcasts them in buckets. Returns bytes sent."""
        return self.broadcaster.send(self.actor.weight_entries())

    @register(Dispatch.RANK_ZERO)
    def save_hf(self, path: str) -> None:
        self.actor.save_hf(path)

    # ---------------------------------------------------------------- checkpoints
    @register(Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, path: str) -> None:
        self.actor.save(path)

    @register(Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, path: str) -> None:
        self.actor.load(path)

    @register(Dispatch.ONE_TO_ALL)
    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
