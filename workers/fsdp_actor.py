"""The FSDP2 actor worker: one Ray actor per rank, all ranks forming one torch.distributed group.

Each rank holds a `fully_shard`-ed copy of the policy (one FSDP unit per decoder layer plus the root) and sees
1/world of every batch. Log-probs and entropies are computed from the hidden states of the response positions
only, chunk by chunk through the LM head (`rest.algo.entropy`), so no [tokens, vocab] fp32 tensor for a whole
batch ever exists. The loss normaliser of each mini-batch is all-reduced first, so gradient accumulation over
micro-batches and ranks gives exactly the loss of the whole mini-batch; so micro-batches may be formed by token
count (actor.max_tokens_per_micro_batch) and packed into one row without padding (actor.use_remove_padding,
`workers.packing`). With actor.load_on_rank0 only rank 0 reads the checkpoint (`workers.model_loading`).
With algorithm.kl_coef > 0 each rank also holds its shard of the frozen reference policy (`workers.reference`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from tensordict import TensorDict
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

from rest.algo import objective
from rest.algo.entropy import entropy_and_logprob_from_hidden
from rest.config.schema import RestConfig
from rest.console import configure_logging
from workers.dispatch import Dispatch, register
from workers.model_loading import build_causal_lm, full_state_for_broadcast, load_sharded_from_rank0
from workers.packing import micro_batch_indices, pack_micro_batch, packed_attn_implementation
from workers.reference import freeze

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class PolicyScorer(nn.Module):
    """Root FSDP unit around the HF causal LM: its forward returns per-token log-prob and entropy of the
    response tokens, so the root's parameters (embeddings, LM head) are unsharded while the head is used."""

    def __init__(self, lm: nn.Module, chunk_size: int, remove_padding: bool = False):
        super().__init__()
        self.lm = lm
        self.chunk_size = chunk_size
        self.remove_padding = remove_padding  # forward the micro-batch packed into one row (workers.packing)

    def forward(self, input_ids, attention_mask, position_ids, responses, response_mask, temperature: float):
        selected = response_mask.bool()
        if self.remove_padding:
            packed = pack_micro_batch(input_ids, attention_mask, position_ids, response_mask)
            hidden = self.lm.model(
                input_ids=packed.input_ids, position_ids=packed.position_ids, use_cache=False,
                **packed.attention_kwargs(),
            ).last_hidden_state[0, packed.hidden_index]
        else:
            hidden = self.lm.model(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
            ).last_hidden_state
            width = responses.shape[1]
            hidden = hidden[:, -width - 1 : -1][selected]  # position t predicts response token t
        entropy, logprob = entropy_and_logprob_from_hidden(
            hidden, self.lm.lm_head.weight, responses[selected], temperature, self.chunk_size
        )
        full_entropy = torch.zeros(responses.shape, dtype=torch.float32, device=responses.device)
        full_logprob = torch.zeros(responses.shape, dtype=torch.float32, device=responses.device)
        full_entropy = full_entropy.masked_scatter(selected, entropy.detach())
        full_logprob = full_logprob.masked_scatter(selected, logprob)
        return full_logprob, full_entropy


def process_group_backend(cfg: RestConfig) -> str:
    """gloo on CPU. On cuda, NCCL for GPU tensors plus gloo for CPU ones: with actor.cpu_offload the sharded
    parameters and gradients live in host RAM, so `clip_grad_norm_`'s all-reduce of the gradient norm runs on
    CPU tensors, which an NCCL-only group refuses (as it refuses checkpointing's CPU-side collectives)."""
    return "cuda:nccl,cpu:gloo" if cfg.trainer.device == "cuda" else "gloo"


def _lr_lambda(warmup_steps: int, total_steps: int, schedule: str):
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "cosine":
            progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return factor


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

    # ---------------------------------------------------------------- set-up
    @register(Dispatch.ONE_TO_ALL)
    def init_model(self, model_path: str, total_steps: int) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.trainer.seed)
        mesh = init_device_mesh(self.device.type, (self.world_size,))
        self.module = self._sharded_scorer(model_path, mesh, trainable=True)
        self.tied = bool(getattr(self.module.lm.config, "tie_word_embeddings", False))
        self.hf_config = self.module.lm.config
        # pi_ref for algorithm.kl_coef > 0: the start model again, sharded on the same mesh, frozen, no optimizer
        self.ref_module = freeze(self._sharded_scorer(model_path, mesh, trainable=False)) \
            if cfg.algorithm.kl_coef > 0 else None
        self.optimizer = torch.optim.AdamW(
            self.module.parameters(), lr=cfg.actor.lr, weight_decay=cfg.actor.weight_decay,
            betas=tuple(cfg.actor.betas),
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(cfg.actor.warmup_steps, total_steps, cfg.actor.lr_schedule)
        )

    def _sharded_scorer(self, model_path: str, mesh, trainable: bool) -> PolicyScorer:
        """The checkpoint as a `fully_shard`-ed PolicyScorer on `mesh` (one unit per decoder layer plus the root).
        With actor.load_on_rank0 only rank 0 reads the checkpoint; the others build on meta
        (workers.model_loading). Gradient checkpointing only where there is a backward (`trainable`)."""
        cfg = self.cfg
        attn = cfg.model.attn_implementation
        if cfg.actor.use_remove_padding:
            attn = packed_attn_implementation(attn)
        from_rank0 = cfg.actor.load_on_rank0 and self.world_size > 1
        lm = build_causal_lm(model_path, DTYPES[cfg.model.dtype], attn, on_meta=from_rank0 and self.rank != 0)
        full_state = full_state_for_broadcast(lm, prefix="lm.") if from_rank0 and self.rank == 0 else None
        if trainable and cfg.model.gradient_checkpointing:
            lm.gradient_checkpointing_enable()
        shard_kwargs = {"mesh": mesh}
        if cfg.actor.mixed_precision == "bf16":
            shard_kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if cfg.actor.cpu_offload:
            shard_kwargs["offload_policy"] = CPUOffloadPolicy()
        for layer in lm.model.layers:
            fully_shard(layer, **shard_kwargs)
        module = PolicyScorer(lm, cfg.actor.entropy_chunk_size, remove_padding=cfg.actor.use_remove_padding)
        fully_shard(module, **shard_kwargs)
        if from_rank0:
            shard_device = torch.device("cpu") if cfg.actor.cpu_offload else self.device
            load_sharded_from_rank0(module, full_state, shard_device)
            del full_state
        elif not cfg.actor.cpu_offload:
            module.to(self.device)
        return module

    # ---------------------------------------------------------------- compute
    def _micro_batches(self, batch: TensorDict, size: int) -> list[list[int]]:
        """Row indices of this rank's micro-batches: by token budget when actor.max_tokens_per_micro_batch is set
        (the same count on every rank), else `size` consecutive rows."""
        return micro_batch_indices(batch, self.cfg.actor.max_tokens_per_micro_batch, size)

    def _score(self, micro: TensorDict, module: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        micro = micro.to(self.device)
        return (module or self.module)(
            micro["input_ids"], micro["attention_mask"], micro["position_ids"], micro["responses"],
            micro["response_mask"], self.cfg.rollout.temperature,
        )

    def _score_batch(self, batch: TensorDict, module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-prob and entropy [rows, width] of `module` (eval, no grad), micro-batch by micro-batch, on CPU."""
        rows, width = batch.batch_size[0], batch["responses"].shape[1]
        logprobs, entropies = torch.zeros(rows, width), torch.zeros(rows, width)
        module.eval()
        with torch.no_grad():
            for index in self._micro_batches(batch, self.cfg.actor.logprob_micro_batch_size):
                logprob, entropy = self._score(batch[torch.tensor(index)], module)
                logprobs[index] = logprob.cpu()
                entropies[index] = entropy.cpu()
        return logprobs, entropies

    @register(Dispatch.DP_COMPUTE)
    def compute_log_prob(self, batch: TensorDict) -> TensorDict:
        """Old-policy log-prob and entropy of every response token (zeros on padding)."""
        logprob, entropy = self._score_batch(batch, self.module)
        return TensorDict({"old_log_prob": logprob, "entropy": entropy}, batch_size=batch.batch_size)

    @register(Dispatch.DP_COMPUTE)
    def compute_ref_log_prob(self, batch: TensorDict) -> TensorDict:
        """Reference-policy log-prob of every response token (zeros on padding), for the KL term."""
        if self.ref_module is None:
            raise RuntimeError("compute_ref_log_prob needs algorithm.kl_coef > 0 (no reference model was built)")
        logprob, _ = self._score_batch(batch, self.ref_module)
        return TensorDict({"ref_log_prob": logprob}, batch_size=batch.batch_size)

    def _global_sum(self, value: torch.Tensor) -> torch.Tensor:
        value = value.detach().to(self.device, torch.float64).clone()
        dist.all_reduce(value)
        return value

    def _all_finite(self, local: bool) -> bool:
        """Whether every rank saw a finite loss and gradient: the optimizer step is taken by all or by none."""
        bad = torch.tensor(0.0 if local else 1.0, device=self.device)
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        return not bool(bad)

    @register(Dispatch.DP_COMPUTE)
    def update_policy(self, batch: TensorDict) -> dict[str, float]:
        """PPO epochs over mini-batches; gradient accumulation over micro-batches; one scheduler step."""
        cfg, algo = self.cfg, self.cfg.algorithm
        local_mini = cfg.actor.ppo_mini_batch_size * cfg.rollout.n // self.world_size
        norm_len = algo.loss_norm_len or cfg.data.max_response_length
        self.module.train()
        sums: dict[str, float] = {}
        grad_norms: list[float] = []
        count = skipped = 0
        # Without old log-probs the update is on-policy (the driver checked: one epoch, one mini-batch), so each
        # micro-batch's forward runs before the only optimizer step and its log-probs are the old ones.
        fused = "old_log_prob" not in batch.keys()
        if fused and (cfg.actor.ppo_epochs != 1 or batch.batch_size[0] > local_mini):
            raise ValueError("update_policy without old_log_prob needs one PPO epoch over one mini-batch")
        diff_max = torch.zeros((), dtype=torch.float64)
        diff_sum, diff_count = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
        for _ in range(cfg.actor.ppo_epochs):
            for mini in batch.split(local_mini):
                weights = mini["token_weights"] if "token_weights" in mini.keys() else None
                # every rank adds its share of the normaliser: the mini-batch loss is exact across ranks
                denominator = self._global_sum(
                    objective.loss_denominator(mini["response_mask"], weights, algo, norm_len=norm_len)
                )
                self.optimizer.zero_grad(set_to_none=True)
                finite_loss = True
                for index in self._micro_batches(mini, cfg.actor.ppo_micro_batch_size):
                    micro = mini[torch.tensor(index)]
                    logprob, entropy = self._score(micro)
                    micro = micro.to(self.device)
                    if fused:
                        old_log_prob = logprob.detach()
                        diff = (micro["rollout_log_prob"] - old_log_prob).abs()[micro["response_mask"].bool()]
                        if diff.numel():
                            diff_max = torch.maximum(diff_max, diff.max().double().cpu())
                            diff_sum += diff.double().sum().cpu()
                            diff_count += diff.numel()
                    else:
                        old_log_prob = micro["old_log_prob"]
                    loss, metrics = objective.policy_loss(
                        logprob, old_log_prob, micro["advantages"], micro["response_mask"],
                        micro["token_weights"] if weights is not None else None, algo,
                        denominator=denominator.to(logprob.dtype), norm_len=norm_len,
                        is_weights=micro["rollout_is_weights"] if "rollout_is_weights" in micro.keys() else None,
                        ref_logprob=micro["ref_log_prob"] if "ref_log_prob" in micro.keys() else None,
                    )
                    # FSDP averages gradients over ranks; the loss is already a global sum, so undo the mean
                    finite_loss = finite_loss and bool(torch.isfinite(loss.detach()))
                    (loss * self.world_size).backward()
                    mask = micro["response_mask"].bool()
                    metrics["actor/entropy"] = entropy[mask].mean() if mask.any() else torch.tensor(0.0)
                    metrics["actor/pg_loss"] = loss
                    for key, value in metrics.items():
                        sums[key] = sums.get(key, 0.0) + float(value.detach() if torch.is_tensor(value) else value)
                    count += 1
                grad_norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), cfg.actor.grad_clip)
                grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
                if self._all_finite(finite_loss and math.isfinite(grad_norm)):
                    self.optimizer.step()
                else:  # one rank's NaN/inf skips the step on every rank: weights stay identical across ranks
                    self.optimizer.zero_grad(set_to_none=True)
                    skipped += 1
                grad_norms.append(grad_norm)
        self.scheduler.step()
        metrics = {key: value / count for key, value in sums.items()}
        metrics["actor/skipped_steps"] = skipped
        metrics["actor/pg_loss"] = sums["actor/pg_loss"] * self.world_size / len(grad_norms)
        metrics["actor/grad_norm"] = sum(grad_norms) / len(grad_norms)
        metrics["actor/lr"] = self.scheduler.get_last_lr()[0]
        if fused:  # the rollout/actor agreement over the whole batch, the same on every rank
            diff_max = diff_max.to(self.device)
            dist.all_reduce(diff_max, op=dist.ReduceOp.MAX)
            metrics["rollout/logprob_diff_max"] = float(diff_max)
            metrics["rollout/logprob_diff_mean"] = float(self._global_sum(diff_sum) / self._global_sum(diff_count).clamp(min=1))
        return metrics

    # ---------------------------------------------------------------- weights
    def _full_state_dict(self) -> dict[str, torch.Tensor]:
        """Full (unsharded) HF-named state dict on rank 0; every rank must call (it is a collective)."""
        state = get_model_state_dict(
            self.module, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
        return {key.removeprefix("lm."): value for key, value in state.items()}

    @register(Dispatch.ONE_TO_ALL)
    def export_weights(self, dtype: str) -> dict:
        """This rank's part of the weights for the rollout engines (`workers.weight_sync`): its local shard of
        every parameter, as zero-copy views that Ray writes straight into the object store; the rollout
        worker takes every rank's export and concatenates. No gather: gloo's all-gather was half of a sync.
        The LM head is named even when tied (sent once), or vLLM's reload would keep its old packed head."""
        from workers.weight_sync import export_state

        # the FSDP2 state-dict hook makes every parameter its sharded DTensor (the root may be unsharded)
        state = self.module.state_dict(keep_vars=True)
        aliases = {"lm_head.weight": "model.embed_tokens.weight"} if self.tied else None
        return export_state(state, self.rank, self.world_size, DTYPES[dtype], strip_prefix="lm.", aliases=aliases)

    def _weight_entries(self) -> list:
        """(names, tensor) per distinct weight, HF names, the tied LM head named too (see export_weights)."""
        from workers.weight_sync import distinct_tensors

        aliases = {"lm_head.weight": "model.embed_tokens.weight"} if self.tied else None
        return distinct_tensors(self.module.state_dict(keep_vars=True), "lm.", aliases)

    @register(Dispatch.RANK_ZERO)
    def weight_sync_manifest(self, dtype: str) -> tuple[tuple[str, int], list]:
        """rollout.weight_sync=collective: rank 0's rendezvous address and the manifest of what a sync sends."""
        from workers.collective_sync import rendezvous_address, tensor_manifest

        return rendezvous_address(), tensor_manifest(self._weight_entries(), DTYPES[dtype])

    @register(Dispatch.ONE_TO_ALL)
    def join_weight_sync(self, host: str, port: int, world_size: int, backend: str, bucket_bytes: int,
                         dtype: str) -> None:
        """Rank 0 joins the weight-sync group (`workers.collective_sync`); every rank keeps the bucket plan."""
        from workers.collective_sync import WeightBroadcaster

        if getattr(self, "broadcaster", None) is not None:
            self.broadcaster.close()
        self.broadcaster = WeightBroadcaster(self.rank, host, port, world_size, backend, bucket_bytes, DTYPES[dtype])

    @register(Dispatch.ONE_TO_ALL)
    def broadcast_weights(self) -> int:
        """Every rank gathers each full tensor in turn; rank 0 broadcasts them in buckets. Returns bytes sent."""
        return self.broadcaster.send(self._weight_entries())

    @register(Dispatch.RANK_ZERO)
    def save_hf(self, path: str) -> None:
        from safetensors.torch import save_file

        state = self._full_state_dict()
        if self.rank != 0:
            return
        if self.tied:
            state.pop("lm_head.weight", None)
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous().clone() for k, v in state.items()}, str(out / "model.safetensors"),
                  metadata={"format": "pt"})
        self.hf_config.save_pretrained(out)

    # ---------------------------------------------------------------- checkpoints
    @register(Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, path: str) -> None:
        model_state, optim_state = get_state_dict(self.module, self.optimizer)
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=os.path.join(path, "actor"))
        torch.save(
            {"scheduler": self.scheduler.state_dict(), "torch_rng": torch.get_rng_state()},
            os.path.join(path, f"actor_extra_rank{self.rank}.pt"),
        )
        dist.barrier()

    @register(Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, path: str) -> None:
        model_state, optim_state = get_state_dict(self.module, self.optimizer)
        state = {"model": model_state, "optim": optim_state}
        dcp.load(state, checkpoint_id=os.path.join(path, "actor"))
        set_state_dict(self.module, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        extra = torch.load(os.path.join(path, f"actor_extra_rank{self.rank}.pt"), weights_only=True)
        self.scheduler.load_state_dict(extra["scheduler"])
        torch.set_rng_state(extra["torch_rng"])
        dist.barrier()

    @register(Dispatch.ONE_TO_ALL)
    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
