"""The phases of one training step, each a function of the batch (`rest.trainer.batch`), testable without Ray.

    generate           prompts -> batch          rollout worker group: responses and their log-probs
    generate_episodes  tasks -> batch, samples   the same for multi-turn tasks (rollout.multi_turn: the agent
                                                 loop; observation tokens in the response with loss mask 0)
    score              batch -> batch            rewards (the reward's parts), DAPO's overlong penalty
    score_episodes     batch -> batch            the same from the environments' reward parts
    keep_varied_groups batch -> batch            DAPO's dynamic sampling: groups whose rewards differ
    label_regions      batch -> batch            region labels of every response token
    balance_rows       batch -> batch            rows reordered for equal token loads per actor rank
    (actor)            batch -> batch            old_log_prob, entropy; ref_log_prob (worker calls)
    check_weight_sync  batch -> metrics          rollout vs actor log-probs; WeightSyncError past the threshold
    correct_rollout    batch -> batch, metrics   rollout correction's IS weights and sequence mask
    compute_advantages batch -> batch            advantages from rewards and group ids
    weight_tokens      batch -> batch, metrics   region weights (ResT)
    (actor)            batch -> batch, metrics   the update (and, fused, old_log_prob); weight sync
    data_metrics       batch -> metrics          rewards, lengths, advantages
"""

from __future__ import annotations

import json
import logging
import math

import torch
from tensordict import TensorDict

from rest.algo import objective
from rest.algo.config import AlgorithmConfig
from rest.algo.rollout_correction import compute_rollout_correction
from rest.config.schema import RestConfig
from rest.data.prompt_set import EnvPrompt, Prompt
from rest.tooluse.regions import label_agent_response
from rest.trainer.batch import build_batch, pad_rows
from rest.workers.packing import balance_over_ranks

log = logging.getLogger(__name__)


class WeightSyncError(RuntimeError):
    """The rollout engine does not sample from the policy the actor holds."""


def fuses_old_log_prob(cfg: RestConfig) -> bool:
    """Whether the update's own forward stands in for the old-policy forward (actor.old_log_prob=auto): true
    when every micro-batch is scored before the one optimizer step of the step (one PPO epoch, one mini-batch)
    and nothing computed before the update needs the old policy (entropy-dependent region weights, rollout
    correction). Decided here, once per run; the driver tells the actor (`update_policy(fused_old_log_prob=)`)."""
    return (cfg.actor.old_log_prob == "auto" and cfg.actor.ppo_epochs == 1
            and cfg.actor.ppo_mini_batch_size == cfg.data.train_batch_size
            and not objective.needs_old_entropy(cfg.algorithm.region_weights.mode)
            and not cfg.algorithm.rollout_correction.enabled)  # the correction needs pi_old before the update


def generate(rollout, prompts: list[Prompt], seeds: list[list[int]], max_tokens: int, pad_id: int) -> TensorDict:
    """n responses per prompt from the rollout group (one seed per sample) -> the batch, a prompt's rows
    contiguous (group_id = the prompt's index in `prompts`)."""
    samples = rollout.generate([p.prompt_ids for p in prompts], seeds, max_tokens)
    rows = [(prompt, group, sample) for group, (prompt, group_samples) in enumerate(zip(prompts, samples))
            for sample in group_samples]
    batch = build_batch([p.prompt_ids for p, _, _ in rows], [s.token_ids for _, _, s in rows],
                        [s.logprobs for _, _, s in rows], pad_id)
    batch["group_id"] = torch.tensor([group for _, group, _ in rows], dtype=torch.long)
    batch["truncated"] = torch.tensor([s.finish_reason == "length" for _, _, s in rows])
    batch["uid"] = [p.uid for p, _, _ in rows]
    batch["ground_truth"] = [p.ground_truth for p, _, _ in rows]
    return batch


def generate_episodes(rollout, items: list[EnvPrompt], seeds: list[list[int]], max_tokens: int, pad_id: int
                      ) -> tuple[TensorDict, list]:
    """Multi-turn: n episodes per task from the rollout group's agent loop (`RolloutWorker.run_agent`, one seed
    per episode) -> (the batch, the AgentSamples in row order). A row's response is the episode's interleaved ids
    exactly as generated and appended (never re-encoded); `response_mask` is 1 on the model's tokens (which carry
    the rollout log-probs) and 0 on observation and template tokens; `truncated`: the episode ran out of tokens."""
    rows = [(item, group, seed) for group, (item, item_seeds) in enumerate(zip(items, seeds)) for seed in item_seeds]
    samples = rollout.run_agent([item.task for item, _, _ in rows], [seed for _, _, seed in rows], max_tokens)
    batch = build_batch([s.prompt_ids for s in samples], [s.response_ids for s in samples],
                        [s.rollout_logprobs for s in samples], pad_id, [s.response_mask for s in samples])
    batch["group_id"] = torch.tensor([group for _, group, _ in rows], dtype=torch.long)
    batch["truncated"] = torch.tensor([s.finish in ("length", "budget") for s in samples])
    batch["uid"] = [item.uid for item, _, _ in rows]
    batch["ground_truth"] = [json.dumps(item.task.gold) for item, _, _ in rows]  # the gold calls, for reading
    return batch, samples


def response_token_ids(batch: TensorDict) -> list[list[int]]:
    """Each row's response tokens (the sequence's, observations included), without padding."""
    prompt_width = batch["input_ids"].shape[1] - batch["responses"].shape[1]
    attention = batch["attention_mask"][:, prompt_width:].bool()
    return [row[keep].tolist() for row, keep in zip(batch["responses"], attention)]


def score(batch: TensorDict, reward_fn, tokenizer, step: int, progress: float, cfg: RestConfig) -> TensorDict:
    """rewards: {total, format, correctness, ...} [B], the reward of each decoded response plus DAPO's soft
    overlong punishment on the total (zeros unless algorithm.overlong.enable). A non-finite part stops the run
    (trainer.nonfinite_reward=error) or is scored 0 and marked in `reward_nonfinite` (=zero)."""
    responses = response_token_ids(batch)
    parts = [dict(reward_fn(tokenizer.decode(ids, skip_special_tokens=True), truth, step, progress))
             for ids, truth in zip(responses, batch["ground_truth"])]
    return _add_rewards(batch, parts, torch.tensor([len(ids) for ids in responses]), step, cfg)


def score_episodes(batch: TensorDict, samples: list, step: int, cfg: RestConfig) -> TensorDict:
    """rewards of multi-turn episodes: the environment's parts (`Environment.score`, computed in the rollout
    worker where the episode's state lives) as the batch's: total = "reward", correctness = "success" (else the
    reward), format = "format" (0 for an environment without one), the other parts under their own names; DAPO's
    overlong punishment on the policy's own tokens only (observations do not count toward a length penalty)."""
    parts = []
    for sample in samples:
        reward = dict(sample.reward)
        total = reward.pop("reward")
        parts.append({"total": total, "format": reward.pop("format", 0.0),
                      "correctness": reward.get("success", total), **reward})
    return _add_rewards(batch, parts, batch["response_mask"].sum(-1), step, cfg)


def _add_rewards(batch: TensorDict, parts: list[dict], lengths: torch.Tensor, step: int, cfg: RestConfig
                 ) -> TensorDict:
    penalties = objective.overlong_penalty(lengths, cfg.data.max_response_length, cfg.algorithm)
    nonfinite = []
    for row, (part, penalty) in enumerate(zip(parts, penalties.tolist())):
        part["total"] += penalty
        nonfinite.append(not all(math.isfinite(value) for value in part.values()))
        if nonfinite[-1]:
            _nonfinite_reward(batch, row, part, step, cfg.trainer.nonfinite_reward)
    batch = batch.clone(recurse=False)
    batch["rewards"] = TensorDict({key: torch.tensor([p[key] for p in parts], dtype=torch.float32)
                                   for key in parts[0]}, batch_size=batch.batch_size)
    batch["reward_nonfinite"] = torch.tensor(nonfinite)
    return batch


def _nonfinite_reward(batch: TensorDict, row: int, part: dict, step: int, policy: str) -> None:
    """A NaN/inf reward would turn the whole group's advantages into NaN: stop, or score it 0."""
    group = batch["group_id"]
    index = row - int((group == group[row]).nonzero()[0])  # the sample's index within its prompt's group
    where = f"step {step}: sample {index} of prompt {batch['uid'][row]!r} has a non-finite reward {part}"
    if policy == "error":
        raise FloatingPointError(f"{where}; set trainer.nonfinite_reward=zero to score such samples 0 "
                                 f"and go on (counted in critic/nonfinite_rewards)")
    log.warning("%s; scored 0 (trainer.nonfinite_reward=zero)", where)
    for key, value in part.items():
        if not math.isfinite(value):
            part[key] = 0.0


def varied_groups(batch: TensorDict) -> torch.Tensor:
    """[B] bool: the row's group has rewards that differ (DAPO keeps those; an all-equal group has zero
    advantage)."""
    return objective.dynamic_sampling_keep(batch["rewards", "total"], batch["group_id"])


def label_regions(batch: TensorDict, tokenizer) -> TensorDict:
    """regions [B, R]: the `Region` label of every response token (0 on padding). Each run of policy tokens
    (loss mask 1: the whole response in single-turn, one model turn in multi-turn) is labelled on its own;
    observation and template tokens get OTHER (`label_agent_response`)."""
    batch = batch.clone(recurse=False)
    labels = [label_agent_response(ids, mask[: len(ids)].tolist(), tokenizer)
              for ids, mask in zip(response_token_ids(batch), batch["response_mask"])]
    batch["regions"] = pad_rows(labels, batch["responses"].shape[1])
    return batch


def balance_rows(batch: TensorDict, num_workers: int) -> TensorDict:
    """Rows reordered for equal token loads per FSDP rank (the ranks take consecutive rows); a row keeps its
    group_id, so advantages still come from its own group."""
    order = balance_over_ranks(batch["attention_mask"].sum(-1).tolist(), num_workers)
    return batch[torch.tensor(order)]


def check_weight_sync(batch: TensorDict, threshold: float | None, step: int) -> dict[str, float]:
    """The rollout's log-prob of each sampled token vs the actor's old_log_prob: equal up to numerics iff the
    rollout engine holds the actor's weights; a silent weight-sync failure shows up here first."""
    mask = batch["response_mask"].bool()
    diff = (batch["rollout_log_prob"] - batch["old_log_prob"]).abs()[mask]
    diff_max = float(diff.max()) if diff.numel() else 0.0
    diff_mean = float(diff.mean()) if diff.numel() else 0.0
    if threshold is not None and diff_max > threshold:
        raise WeightSyncError(
            f"step {step}: rollout/logprob_diff_max = {diff_max:.3g} > rollout.logprob_diff_threshold = "
            f"{threshold:g}: the rollout engine is not sampling from the actor's weights")
    return {"rollout/logprob_diff_max": diff_max, "rollout/logprob_diff_mean": diff_mean}


def correct_rollout(batch: TensorDict, algo: AlgorithmConfig) -> tuple[TensorDict, dict[str, float]]:
    """Rollout correction (algorithm.rollout_correction): the samples come from the rollout engine's
    pi_rollout, not exactly from the actor's pi_old. Token-level truncated IS weights go to the update as
    `rollout_is_weights`; sequences outside the masked-IS band leave the loss (their response mask is 0)."""
    cfg = algo.rollout_correction
    if not cfg.enabled:
        return batch, {}
    batch = batch.clone(recurse=False)
    weights, batch["response_mask"], metrics = compute_rollout_correction(
        batch["old_log_prob"], batch["rollout_log_prob"], batch["response_mask"], cfg)
    if weights is not None:
        batch["rollout_is_weights"] = weights
    return batch, metrics


def compute_advantages(batch: TensorDict, algo: AlgorithmConfig) -> TensorDict:
    """advantages [B, R] of algorithm.adv_estimator from the total rewards within each group."""
    batch = batch.clone(recurse=False)
    batch["advantages"] = objective.compute_advantages(batch["rewards", "total"], batch["group_id"],
                                                       batch["response_mask"], algo)
    return batch


def weight_tokens(batch: TensorDict, progress: float, step: int, algo: AlgorithmConfig
                  ) -> tuple[TensorDict, dict[str, float]]:
    """token_weights [B, R] of algorithm.region_weights (absent for the unweighted presets), and the
    per-region metrics; pi_old's entropy when the batch has it."""
    weights, metrics = objective.compute_token_weights(batch["regions"], batch["response_mask"],
                                                       batch.get("entropy"), progress, step, algo)
    if weights is None:
        return batch, metrics
    batch = batch.clone(recurse=False)
    batch["token_weights"] = weights
    return batch, metrics


def episode_metrics(batch: TensorDict, samples: list) -> dict[str, float]:
    """Multi-turn: the agent loop's rollout/* counts over every episode drawn (`rollout_metrics`) and the mean of
    each environment reward part beyond the batch's three (critic/env/<part>_mean, e.g. success, calls)."""
    from rest.workers.agent_loop import rollout_metrics

    rewards = batch["rewards"]
    extra = {f"critic/env/{key}_mean": float(rewards[key].double().mean()) for key in rewards.keys()
             if key not in ("total", "format", "correctness")}
    return {**rollout_metrics(samples), **extra}


def data_metrics(batch: TensorDict, loss_mask: torch.Tensor) -> dict[str, float]:
    """Rewards, advantages and lengths of the step's batch. `loss_mask`: the response mask before the
    rollout correction narrowed it (lengths are of what was sampled)."""
    rewards = batch["rewards"]
    lengths = loss_mask.sum(-1).float()
    return {
        "critic/reward_mean": float(rewards["total"].mean()), "critic/reward_max": float(rewards["total"].max()),
        "critic/reward_min": float(rewards["total"].min()),
        "critic/format_mean": float(rewards["format"].double().mean()),
        "critic/correctness_mean": float(rewards["correctness"].double().mean()),
        "critic/advantage_abs_mean": float(batch["advantages"].abs()[loss_mask.bool()].mean()),
        "response_length/mean": float(lengths.mean()), "response_length/max": float(lengths.max()),
        "response_length/clip_ratio": float(batch["truncated"].float().mean()),
    }
