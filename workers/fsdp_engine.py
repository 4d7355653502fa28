"""The training engine of one rank: a policy sharded with FSDP2, and what can be done with it.

    infer(batch)                      log-prob and entropy of every response token, no gradient
    forward_backward(micro, loss_fn)  forward, the injected loss, backward (gradients accumulate)
    optimizer_step(finite)            clip, then step on every rank or on none; zero the gradients
    export_weights / save_hf / save / load

The engine knows nothing of PPO: the worker (`rest.workers.fsdp_actor`) runs the schedule (epochs, mini-batches,
micro-batches) and passes the loss of the algorithm registry (`rest.algo.objective`) in. A frozen engine (no
optimizer) is the reference policy of the KL term.

Log-probs and entropies are computed from the hidden states of the response positions only, chunk by chunk
through the LM head (`rest.algo.entropy`), so no [tokens, vocab] fp32 tensor for a whole batch ever exists.
Micro-batches may be formed by token count (actor.max_tokens_per_micro_batch) and packed into one row without
padding (actor.use_remove_padding, `rest.workers.packing`). With actor.load_on_rank0 only rank 0 reads the
checkpoint (`rest.workers.model_loading`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

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
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

from rest.algo.entropy import entropy_and_logprob_from_hidden
from rest.config.schema import RestConfig
from rest.workers.model_loading import build_causal_lm, full_state_for_broadcast, load_sharded_from_rank0
from rest.workers.packing import micro_batch_indices, pack_micro_batch, packed_attn_implementation
from rest.workers.reference import freeze

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# loss_fn(log_prob [b, R] with grad, micro batch) -> (scalar loss, {name: float} per micro-batch)
LossFn = Callable[[torch.Tensor, TensorDict], tuple[torch.Tensor, dict]]


class PolicyScorer(nn.Module):
    """Root FSDP unit around the HF causal LM: its forward returns per-token log-prob and entropy of the
    response tokens, so the root's parameters (embeddings, LM head) are unsharded while the head is used.
    Only tokens of the loss mask (`response_mask`) are scored; the others are 0."""

    def __init__(self, lm: nn.Module, chunk_size: int, remove_padding: bool = False):
        super().__init__()
        self.lm = lm
        self.chunk_size = chunk_size
        self.remove_padding = remove_padding  # forward the micro-batch packed into one row (rest.workers.packing)

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


class FSDPEngine:
    """The policy (trainable: AdamW and the LR schedule) or a frozen copy (the KL reference) on `mesh`."""

    def __init__(self, cfg: RestConfig, model_path: str, mesh, rank: int, world_size: int, device: torch.device,
                 trainable: bool = True, total_steps: int = 1):
        self.cfg, self.rank, self.world_size, self.device = cfg, rank, world_size, device
        self.module = self._sharded_scorer(model_path, mesh, trainable)
        self.tied = bool(getattr(self.module.lm.config, "tie_word_embeddings", False))
        self.hf_config = self.module.lm.config
        self.optimizer = self.scheduler = None
        if not trainable:
            freeze(self.module)
            return
        actor = cfg.actor
        self.optimizer = torch.optim.AdamW(self.module.parameters(), lr=actor.lr, weight_decay=actor.weight_decay,
                                           betas=tuple(actor.betas))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(actor.warmup_steps, total_steps, actor.lr_schedule))

    def _sharded_scorer(self, model_path: str, mesh, trainable: bool) -> PolicyScorer:
        """The checkpoint as a `fully_shard`-ed PolicyScorer on `mesh` (one unit per decoder layer plus the root).
        With actor.load_on_rank0 only rank 0 reads the checkpoint; the others build on meta
        (rest.workers.model_loading). Gradient checkpointing only where there is a backward (`trainable`)."""
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
    def micro_batches(self, batch: TensorDict, size: int) -> list[list[int]]:
        """Row indices of this rank's micro-batches: by token budget when actor.max_tokens_per_micro_batch is set
        (the same count on every rank), else `size` consecutive rows."""
        return micro_batch_indices(batch, self.cfg.actor.max_tokens_per_micro_batch, size)

    def forward(self, micro: TensorDict) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-prob with grad, entropy) [b, R] of the micro-batch's response tokens, on the engine's device."""
        micro = micro.to(self.device)
        return self.module(micro["input_ids"], micro["attention_mask"], micro["position_ids"], micro["responses"],
                           micro["response_mask"], self.cfg.rollout.temperature)

    def infer(self, batch: TensorDict, micro_size: int) -> TensorDict:
        """log_prob and entropy [rows, R] (eval, no grad), micro-batch by micro-batch, on CPU."""
        rows, width = batch.batch_size[0], batch["responses"].shape[1]
        log_prob, entropy = torch.zeros(rows, width), torch.zeros(rows, width)
        self.module.eval()
        with torch.no_grad():
            for index in self.micro_batches(batch, micro_size):
                micro_log_prob, micro_entropy = self.forward(batch[torch.tensor(index)])
                log_prob[index], entropy[index] = micro_log_prob.cpu(), micro_entropy.cpu()
        return TensorDict({"log_prob": log_prob, "entropy": entropy}, batch_size=batch.batch_size)

    def forward_backward(self, micro: TensorDict, loss_fn: LossFn) -> tuple[torch.Tensor, TensorDict, dict]:
        """Forward, loss_fn, backward of one micro-batch (call `train_mode()` first). The loss is a share of a
        global (all ranks) loss, so the backward undoes FSDP's mean of gradients over ranks. Returns the
        detached loss, the micro-batch's log_prob and entropy, and loss_fn's metrics."""
        log_prob, entropy = self.forward(micro)
        loss, metrics = loss_fn(log_prob, micro.to(self.device))
        (loss * self.world_size).backward()
        scored = TensorDict({"log_prob": log_prob.detach(), "entropy": entropy}, batch_size=micro.batch_size)
        return loss.detach(), scored, metrics

    def train_mode(self) -> None:
        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)

    def optimizer_step(self, local_finite: bool) -> tuple[float, bool]:
        """Clip the accumulated gradients and take the step on every rank, or, when any rank saw a non-finite
        loss or gradient, on none (the shards stay one model). Gradients are zeroed. -> (grad norm, stepped)."""
        grad_norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.actor.grad_clip)
        grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
        bad = torch.tensor(0.0 if local_finite and math.isfinite(grad_norm) else 1.0, device=self.device)
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        stepped = not bool(bad)
        if stepped:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm, stepped

    def lr_step(self) -> float:
        """One LR schedule step (one per update call); the new learning rate."""
        self.scheduler.step()
        return self.scheduler.get_last_lr()[0]

    def global_sum(self, value: torch.Tensor) -> torch.Tensor:
        value = value.detach().to(self.device, torch.float64).clone()
        dist.all_reduce(value)
        return value

    # ---------------------------------------------------------------- weights
    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Full (unsharded) HF-named state dict on rank 0; every rank must call (it is a collective)."""
        state = get_model_state_dict(self.module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return {key.removeprefix("lm."): value for key, value in state.items()}

    def export_weights(self, dtype: str) -> dict:
        """This rank's part of the weights for the rollout engines (`rest.workers.weight_sync`): its local shard of
        every parameter, as zero-copy views that Ray writes straight into the object store; the rollout
        worker takes every rank's export and concatenates. No gather: gloo's all-gather was half of a sync.
        The LM head is named even when tied (sent once), or vLLM's reload would keep its old packed head."""
        from rest.workers.weight_sync import export_state

        # the FSDP2 state-dict hook makes every parameter its sharded DTensor (the root may be unsharded)
        state = self.module.state_dict(keep_vars=True)
        aliases = {"lm_head.weight": "model.embed_tokens.weight"} if self.tied else None
        return export_state(state, self.rank, self.world_size, DTYPES[dtype], strip_prefix="lm.", aliases=aliases)

    def weight_entries(self) -> list:
        """(names, tensor) per distinct weight, HF names, the tied LM head named too (see export_weights); the
        collective sync (`rest.workers.collective_sync`) gathers and broadcasts them in this order."""
        from rest.workers.weight_sync import distinct_tensors

        aliases = {"lm_head.weight": "model.embed_tokens.weight"} if self.tied else None
        return distinct_tensors(self.module.state_dict(keep_vars=True), "lm.", aliases)

    def save_hf(self, path: str) -> None:
        """A Hugging Face model folder (safetensors + config), written by rank 0; every rank must call."""
        from safetensors.torch import save_file

        state = self.full_state_dict()
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
    def save(self, path: str) -> None:
        """Sharded model and optimizer (DCP), plus this rank's LR schedule and torch RNG."""
        model_state, optim_state = get_state_dict(self.module, self.optimizer)
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=os.path.join(path, "actor"))
        torch.save({"scheduler": self.scheduler.state_dict(), "torch_rng": torch.get_rng_state()},
                   os.path.join(path, f"actor_extra_rank{self.rank}.pt"))
        dist.barrier()

    def load(self, path: str) -> None:
        model_state, optim_state = get_state_dict(self.module, self.optimizer)
        state = {"model": model_state, "optim": optim_state}
        dcp.load(state, checkpoint_id=os.path.join(path, "actor"))
        set_state_dict(self.module, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        extra = torch.load(os.path.join(path, f"actor_extra_rank{self.rank}.pt"), weights_only=True)
        self.scheduler.load_state_dict(extra["scheduler"])
        torch.set_rng_state(extra["torch_rng"])
        dist.barrier()
