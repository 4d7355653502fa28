"""Cross-field checks of the whole config: impossible combinations fail here, naming the keys."""

from __future__ import annotations

import os

from rest.config.schema import RestConfig


class ConfigError(ValueError):
    """A bad configuration value; the message names the key."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _choice(value: str, key: str, options: tuple[str, ...]) -> None:
    _require(value in options, f"{key} must be one of {list(options)}, got {value!r}")


def available_cpus(cfg: RestConfig) -> float:
    per_node = cfg.trainer.cpus_per_node or os.cpu_count() or 1
    return per_node * cfg.trainer.nnodes


def check_batch_sizes(cfg: RestConfig) -> None:
    data, actor, rollout = cfg.data, cfg.actor, cfg.rollout
    for key, value in [("data.train_batch_size", data.train_batch_size), ("rollout.n", rollout.n),
                       ("actor.num_workers", actor.num_workers), ("rollout.num_workers", rollout.num_workers),
                       ("actor.ppo_mini_batch_size", actor.ppo_mini_batch_size),
                       ("actor.ppo_micro_batch_size", actor.ppo_micro_batch_size),
                       ("actor.logprob_micro_batch_size", actor.logprob_micro_batch_size),
                       ("actor.ppo_epochs", actor.ppo_epochs), ("data.max_prompt_length", data.max_prompt_length),
                       ("data.max_response_length", data.max_response_length)]:
        _require(value >= 1, f"{key} must be >= 1, got {value}")
    sequences = data.train_batch_size * rollout.n
    _require(sequences % actor.num_workers == 0,
             f"data.train_batch_size x rollout.n = {sequences} sequences must divide evenly over "
             f"actor.num_workers = {actor.num_workers} FSDP ranks")
    _require(data.train_batch_size % actor.ppo_mini_batch_size == 0,
             f"actor.ppo_mini_batch_size = {actor.ppo_mini_batch_size} must divide data.train_batch_size = "
             f"{data.train_batch_size}")
    mini_sequences = actor.ppo_mini_batch_size * rollout.n
    _require(mini_sequences % actor.num_workers == 0,
             f"actor.ppo_mini_batch_size x rollout.n = {mini_sequences} must divide evenly over "
             f"actor.num_workers = {actor.num_workers}")
    _require(actor.num_threads >= 1, f"actor.num_threads must be >= 1, got {actor.num_threads}")
    _require(rollout.num_threads >= 0, f"rollout.num_threads must be >= 0 (0: all cores), got {rollout.num_threads}")
    _require(actor.old_log_prob in ("auto", "recompute"),
             f"actor.old_log_prob must be auto or recompute, got {actor.old_log_prob!r}")
    if actor.max_tokens_per_micro_batch is not None:
        longest = data.max_prompt_length + data.max_response_length
        _require(actor.max_tokens_per_micro_batch >= longest,
                 f"actor.max_tokens_per_micro_batch = {actor.max_tokens_per_micro_batch} must hold the longest "
                 f"sequence: data.max_prompt_length + data.max_response_length = {longest}")
        _require(actor.use_remove_padding,
                 "actor.max_tokens_per_micro_batch needs actor.use_remove_padding=true (a padded micro-batch costs "
                 "its widest row times its rows, not its tokens)")
    if actor.use_remove_padding:
        _choice(cfg.model.attn_implementation, "model.attn_implementation (with actor.use_remove_padding)",
                ("sdpa", "eager", "flash_attention_2", "flash_attention_3"))
    per_rank = mini_sequences // actor.num_workers
    _require(actor.max_tokens_per_micro_batch is not None or per_rank % actor.ppo_micro_batch_size == 0,
             f"actor.ppo_micro_batch_size = {actor.ppo_micro_batch_size} must divide the per-rank mini-batch "
             f"of {per_rank} sequences (actor.ppo_mini_batch_size x rollout.n / actor.num_workers)")


def check_resources(cfg: RestConfig) -> None:
    """What the placement books (rest.workers.resource_pool.placement_spec) must fit the declared cluster, bundle
    by bundle (a bundle lies on one node), before Ray waits for resources that will never come."""
    trainer, actor, rollout = cfg.trainer, cfg.actor, cfg.rollout
    on_gpu = trainer.device == "cuda"
    colocated = trainer.placement == "colocated"
    tp = rollout.tensor_parallel_size
    _require(tp >= 1, f"rollout.tensor_parallel_size must be >= 1, got {tp}")
    _require(tp == 1 or rollout.backend == "vllm",
             f"rollout.tensor_parallel_size={tp} needs rollout.backend=vllm (the hf backend runs one process)")
    _require(trainer.nnodes == 1 or bool(trainer.ray_address),
             "trainer.nnodes > 1 needs trainer.ray_address (e.g. auto) pointing at a started multi-node Ray cluster")
    if colocated:
        _require(rollout.num_workers <= actor.num_workers,
                 "trainer.placement=colocated needs rollout.num_workers <= actor.num_workers")

    per_node = cfg.trainer.cpus_per_node or os.cpu_count() or 1
    rollout_cpus = rollout.num_workers * rollout.cpus_per_worker
    need = actor.num_workers * actor.cpus_per_worker + rollout_cpus  # colocated bundles add them up too
    have = available_cpus(cfg)
    _require(need <= have,
             f"the worker groups need {need:g} CPUs (actor.num_workers x actor.cpus_per_worker + "
             f"rollout.num_workers x rollout.cpus_per_worker) but the cluster has {have:g} (trainer.nnodes x "
             f"trainer.cpus_per_node, which defaults to this machine's {os.cpu_count()} cores)")
    bundle_cpus = max(actor.cpus_per_worker + (rollout.cpus_per_worker if colocated else 0), rollout.cpus_per_worker)
    _require(bundle_cpus <= per_node,
             f"one worker's bundle needs {bundle_cpus:g} CPUs but a node has {per_node} (trainer.cpus_per_node)")

    if not on_gpu:
        _require(actor.gpus_per_worker == 0 and rollout.gpus_per_worker == 0,
                 "actor.gpus_per_worker / rollout.gpus_per_worker must be 0 with trainer.device=cpu")
        return
    _require(trainer.gpus_per_node >= 1, "trainer.gpus_per_node must be >= 1 with trainer.device=cuda")
    _require(actor.gpus_per_worker > 0 and rollout.gpus_per_worker > 0,
             "actor.gpus_per_worker and rollout.gpus_per_worker must be > 0 with trainer.device=cuda")
    engine_gpus = rollout.gpus_per_worker * tp
    # vLLM's mp executor runs the TP ranks as processes of the rollout actor: all on the actor's node
    _require(engine_gpus <= trainer.gpus_per_node,
             f"one rollout engine needs rollout.tensor_parallel_size x rollout.gpus_per_worker = {engine_gpus:g} "
             f"GPUs on one node, but trainer.gpus_per_node = {trainer.gpus_per_node}")
    _require(actor.gpus_per_worker <= trainer.gpus_per_node,
             f"actor.gpus_per_worker = {actor.gpus_per_worker:g} exceeds trainer.gpus_per_node")
    have_gpus = trainer.nnodes * trainer.gpus_per_node
    if colocated:
        # rollout worker i runs on actor rank i's GPU (rest.workers.resource_pool): one GPU each, shared
        _require(actor.gpus_per_worker == 1 and rollout.gpus_per_worker == 1 and tp == 1,
                 "trainer.placement=colocated on cuda shares actor rank i's GPU with rollout worker i: it needs "
                 "actor.gpus_per_worker = rollout.gpus_per_worker = 1 and rollout.tensor_parallel_size = 1 "
                 f"(got {actor.gpus_per_worker:g}, {rollout.gpus_per_worker:g}, {tp})")
        # vLLM reserves gpu_memory_utilization of the whole GPU at start and fails if that is not free
        _require(rollout.gpu_memory_utilization <= 0.5,
                 f"trainer.placement=colocated on cuda: rollout.gpu_memory_utilization = "
                 f"{rollout.gpu_memory_utilization:g} of the GPU leaves too little to the actor rank on it; "
                 "use <= 0.5 (dry_run=true shows both estimates)")
        need_gpus = actor.num_workers * actor.gpus_per_worker
    else:
        need_gpus = actor.num_workers * actor.gpus_per_worker + rollout.num_workers * engine_gpus
    _require(need_gpus <= have_gpus,
             f"the worker groups need {need_gpus:g} GPUs ({'shared by actor and rollout, ' if colocated else ''}"
             f"actor.num_workers x actor.gpus_per_worker"
             f"{'' if colocated else ' + rollout.num_workers x tensor_parallel_size x gpus_per_worker'}) "
             f"but trainer.nnodes x trainer.gpus_per_node = {have_gpus}")


def check_runnable(cfg: RestConfig) -> None:
    """Settings that pass type checks but fail once the workers run."""
    model, actor, trainer = cfg.model, cfg.actor, cfg.trainer
    _require(not actor.cpu_offload or trainer.device == "cuda",
             "actor.cpu_offload=true offloads GPU state to host RAM: it needs trainer.device=cuda (on CPU the "
             "state is in host RAM already)")
    if model.attn_implementation == "flash_attention_2":
        compute = "bfloat16" if actor.mixed_precision == "bf16" else model.dtype
        _require(trainer.device == "cuda", "model.attn_implementation=flash_attention_2 needs trainer.device=cuda")
        _require(compute in ("bfloat16", "float16"),
                 f"model.attn_implementation=flash_attention_2 needs 16-bit compute, but the actor computes in "
                 f"{compute} (model.dtype={model.dtype}, actor.mixed_precision={actor.mixed_precision}): set "
                 "actor.mixed_precision=bf16 or model.attn_implementation=sdpa")
    val_prompt = cfg.validation.max_prompt_length
    _require(val_prompt is None or val_prompt >= 1, f"validation.max_prompt_length must be >= 1, got {val_prompt}")


def check_weight_sync(cfg: RestConfig) -> None:
    """rollout.weight_sync, and the settings the collective sync (workers/collective_sync.py) cannot serve."""
    rollout, trainer = cfg.rollout, cfg.trainer
    _choice(rollout.weight_sync, "rollout.weight_sync", ("object_store", "collective"))
    if rollout.weight_sync != "collective":
        return
    _require(rollout.backend == "vllm",
             f"rollout.weight_sync=collective needs rollout.backend=vllm (the receivers run inside vLLM's worker "
             f"processes), got rollout.backend={rollout.backend}: use rollout.weight_sync=object_store")
    _require(not (trainer.device == "cuda" and trainer.placement == "colocated"),
             "rollout.weight_sync=collective with trainer.placement=colocated on cuda: actor rank 0 and rollout "
             "worker 0 share one GPU, and NCCL refuses two ranks of one group on one device: use "
             "rollout.weight_sync=object_store or trainer.placement=separate")
    _require(rollout.weight_sync_bucket_mb >= 1,
             f"rollout.weight_sync_bucket_mb must be >= 1, got {rollout.weight_sync_bucket_mb}")


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
VENDORS = ("vllm", "ray", "transformers", "torch")


def check_fault_handling(cfg: RestConfig) -> None:
    """Checkpoint retention, non-finite rewards, logging levels and the test-only crash hook."""
    trainer = cfg.trainer
    _require(trainer.max_checkpoints_to_keep is None or trainer.max_checkpoints_to_keep >= 1,
             f"trainer.max_checkpoints_to_keep must be >= 1 or null (keep all), got {trainer.max_checkpoints_to_keep}")
    _choice(trainer.nonfinite_reward, "trainer.nonfinite_reward", ("error", "zero"))
    _choice(trainer.log_level, "trainer.log_level", LOG_LEVELS)
    for vendor, level in trainer.vendor_log_levels.items():
        _choice(vendor, "trainer.vendor_log_levels key", VENDORS)
        _choice(level, f"trainer.vendor_log_levels.{vendor}", LOG_LEVELS)
    _require(trainer.max_restarts >= 0, f"trainer.max_restarts must be >= 0, got {trainer.max_restarts}")
    _choice(trainer.crash_in, "trainer.crash_in", ("step", "save", "rollout", "actor"))


def check_validation(cfg: RestConfig) -> None:
    val = cfg.validation
    _require(val.limit >= 1, f"validation.limit must be >= 1, got {val.limit}")
    _require(val.task_limit is None or val.task_limit >= 1,
             f"validation.task_limit must be >= 1 or null (the whole split), got {val.task_limit}")
    _require(val.pass_k >= 0, f"validation.pass_k must be >= 0 (0: off), got {val.pass_k}")
    _require(val.pass_k == 0 or val.pass_n >= val.pass_k,
             f"validation.pass_n = {val.pass_n} samples per item must be >= validation.pass_k = {val.pass_k}")


def check_multi_turn(cfg: RestConfig) -> None:
    multi = cfg.rollout.multi_turn
    _require((cfg.data.source == "env") == multi.enable,
             "data.source=env and rollout.multi_turn.enable=true go together (environments run only in the multi-turn "
             f"agent loop), got data.source={cfg.data.source!r}, rollout.multi_turn.enable={multi.enable}")
    if not multi.enable:
        return
    _require(multi.max_turns >= 1, f"rollout.multi_turn.max_turns must be >= 1, got {multi.max_turns}")
    _require(1 <= multi.max_obs_tokens < cfg.data.max_response_length,
             f"rollout.multi_turn.max_obs_tokens must be in [1, data.max_response_length = "
             f"{cfg.data.max_response_length}) (observations share the response budget), got {multi.max_obs_tokens}")
    _require(cfg.rollout.backend == "vllm", "rollout.multi_turn.enable=true needs rollout.backend=vllm (the agent "
             "loop generates from token ids through vLLM)")


def validate(cfg: RestConfig) -> None:
    _choice(cfg.trainer.device, "trainer.device", ("cpu", "cuda"))
    _choice(cfg.trainer.placement, "trainer.placement", ("separate", "colocated"))
    _choice(cfg.rollout.backend, "rollout.backend", ("vllm", "hf"))
    _choice(cfg.model.dtype, "model.dtype", ("float32", "bfloat16"))
    _choice(cfg.rollout.dtype, "rollout.dtype", ("float32", "bfloat16", "float16"))
    _choice(cfg.rollout.engine_process, "rollout.engine_process", ("auto", "inline", "separate"))
    _choice(cfg.actor.mixed_precision, "actor.mixed_precision", ("none", "bf16"))
    _choice(cfg.actor.lr_schedule, "actor.lr_schedule", ("constant", "cosine"))
    _choice(cfg.trainer.wandb_mode, "trainer.wandb_mode", ("offline", "online", "disabled"))
    for logger in cfg.trainer.loggers:
        _choice(logger, "trainer.loggers[]", ("console", "jsonl", "wandb"))
    _require(cfg.trainer.total_epochs >= 1, "trainer.total_epochs must be >= 1")
    _require(cfg.trainer.total_steps is None or cfg.trainer.total_steps >= 1, "trainer.total_steps must be >= 1")
    _require(cfg.rollout.temperature > 0, "rollout.temperature must be > 0 (greedy is for validation only)")
    _require(0 < cfg.rollout.top_p <= 1, "rollout.top_p must be in (0, 1]")
    _require(cfg.actor.lr > 0, "actor.lr must be > 0")
    _require(len(cfg.actor.betas) == 2, "actor.betas must have two values")
    _require(cfg.trainer.resume in ("auto", "disable") or os.path.isdir(cfg.trainer.resume),
             f"trainer.resume must be auto, disable or an existing checkpoint dir, got {cfg.trainer.resume!r}")
    for benchmark in cfg.validation.benchmarks:
        _choice(benchmark, "validation.benchmarks[]", ("task", "apibank", "bfcl"))
    _require("apibank" not in cfg.validation.benchmarks or bool(cfg.validation.apibank_dir),
             "validation.apibank_dir is required when validation.benchmarks includes apibank")
    _choice(cfg.validation.bfcl_version, "validation.bfcl_version", ("v3", "v4"))
    _require(cfg.data.prompt_format != "hermes" or cfg.algorithm.reward.accept_arguments_key,
             'data.prompt_format=hermes needs algorithm.reward.accept_arguments_key=true (the model writes "arguments")')
    _choice(cfg.validation.on_error, "validation.on_error", ("warn", "error"))
    check_fault_handling(cfg)
    _choice(cfg.model.attn_implementation, "model.attn_implementation", ("sdpa", "eager", "flash_attention_2"))
    check_validation(cfg)
    check_multi_turn(cfg)
    check_batch_sizes(cfg)
    check_resources(cfg)
    check_runnable(cfg)
    check_weight_sync(cfg)
    for section in (cfg.algorithm, cfg.data):
        try:
            section.validate()
        except ValueError as error:
            raise ConfigError(str(error)) from None
