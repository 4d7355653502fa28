"""The resource plan of a validated config, printed by `dry_run=true` without starting anything."""

from __future__ import annotations

from rest.config.schema import RestConfig


def describe_plan(cfg: RestConfig) -> str:
    t, a, r, d = cfg.trainer, cfg.actor, cfg.rollout, cfg.data
    sequences = d.train_batch_size * r.n
    mini = a.ppo_mini_batch_size * r.n
    lines = [
        f"model: {cfg.model.path} ({cfg.model.dtype}, gradient checkpointing {cfg.model.gradient_checkpointing})",
        f"algorithm: {cfg.algorithm.name} (advantage {cfg.algorithm.adv_estimator}, loss {cfg.algorithm.policy_loss}"
        f" / {cfg.algorithm.loss_agg_mode}, region weights {cfg.algorithm.region_weights.mode})",
        f"cluster: {t.nnodes} node(s), device {t.device}, placement {t.placement}",
        f"actor: {a.num_workers} FSDP2 ranks x ({a.cpus_per_worker:g} CPU, {a.gpus_per_worker:g} GPU), "
        f"backend {'nccl' if t.device == 'cuda' else 'gloo'}",
        f"rollout: {r.num_workers} {r.backend} worker(s) x TP {r.tensor_parallel_size} x "
        f"({r.cpus_per_worker:g} CPU, {r.gpus_per_worker:g} GPU)",
        f"step: {d.train_batch_size} prompts x {r.n} samples = {sequences} sequences; "
        f"{d.train_batch_size // a.ppo_mini_batch_size * a.ppo_epochs} optimizer steps of {mini} sequences; "
        f"{mini // a.num_workers // a.ppo_micro_batch_size} micro-batches of {a.ppo_micro_batch_size} per rank",
        f"lengths: prompt <= {d.max_prompt_length}, response <= {d.max_response_length}",
        f"run dir: {t.run_dir}",
    ]
    return "\n".join(lines)
