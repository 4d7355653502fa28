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
    trainer, actor, rollout = cfg.trainer, cfg.actor, cfg.rollout
    if trainer.device == "cpu":
        _require(actor.gpus_per_worker == 0 and rollout.gpus_per_worker == 0,
                 "actor.gpus_per_worker / rollout.gpus_per_worker must be 0 with trainer.device=cpu")
        need = actor.num_workers * actor.cpus_per_worker + rollout.num_workers * rollout.cpus_per_worker
        have = available_cpus(cfg)
        _require(need <= have,
                 f"the worker groups need {need:g} CPUs (actor.num_workers x actor.cpus_per_worker + "
                 f"rollout.num_workers x rollout.cpus_per_worker) but trainer.nnodes x cpus_per_node = {have:g}")
    else:
        _require(trainer.gpus_per_node >= 1, "trainer.gpus_per_node must be >= 1 with trainer.device=cuda")
        _require(actor.gpus_per_worker > 0 and rollout.gpus_per_worker > 0,
                 "actor.gpus_per_worker and rollout.gpus_per_worker must be > 0 with trainer.device=cuda")
        need = actor.num_workers * actor.gpus_per_worker
        need += rollout.num_workers * rollout.gpus_per_worker * rollout.tensor_parallel_size
        have = trainer.nnodes * trainer.gpus_per_node
        if trainer.placement == "colocated":
            need = max(actor.num_workers * actor.gpus_per_worker, need - actor.num_workers * actor.gpus_per_worker)
        _require(need <= have,
                 f"the worker groups need {need:g} GPUs but trainer.nnodes x trainer.gpus_per_node = {have}")
    _require(trainer.nnodes == 1 or bool(trainer.ray_address),
             "trainer.nnodes > 1 needs trainer.ray_address (e.g. auto) pointing at a started multi-node Ray cluster")
    if trainer.placement == "colocated":
        _require(rollout.num_workers <= actor.num_workers,
                 "trainer.placement=colocated needs rollout.num_workers <= actor.num_workers")


def validate(cfg: RestConfig) -> None:
    _choice(cfg.trainer.device, "trainer.device", ("cpu", "cuda"))
    _choice(cfg.trainer.placement, "trainer.placement", ("separate", "colocated"))
    _choice(cfg.rollout.backend, "rollout.backend", ("vllm", "hf"))
    _choice(cfg.model.dtype, "model.dtype", ("float32", "bfloat16"))
    _choice(cfg.rollout.dtype, "rollout.dtype", ("float32", "bfloat16", "float16"))
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
    check_batch_sizes(cfg)
    check_resources(cfg)
    for section in (cfg.algorithm, cfg.data):
        try:
            section.validate()
        except ValueError as error:
            raise ConfigError(str(error)) from None
