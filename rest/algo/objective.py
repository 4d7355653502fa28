"""The facade the driver calls: ResT / GRPO / Dr.GRPO / DAPO objective from config, pure tensors.

One batch, [B, T] tensors over response tokens (H_old, the old policy's entropy, is needed before the update iff
needs_old_entropy(cfg.region_weights.mode); otherwise pass it when computed anyway, for the metrics):
    A = compute_advantages(R, group_ids, mask, cfg)               # per-token advantage
    w, m = compute_token_weights(regions, mask, H_old, nu, s, cfg)   # region weights (None for baselines)
    D = loss_denominator(mask, w, cfg)                            # all-reduce across micro-batches/ranks
    L, m = policy_loss(logp, logp_old, A, mask, w, cfg, denominator=D_global)
"""

from __future__ import annotations

import torch

from rest.algo.advantages import ADV_ESTIMATORS
from rest.algo.config import REGION_NAMES, AlgorithmConfig
from rest.algo.losses import POLICY_LOSSES, aggregate, aggregation_denominator, kl_penalty, masked_mean
from rest.algo.region_weights import compute_region_weights, needs_old_entropy
from rest.algo import shaping

__all__ = [
    "compute_advantages",
    "compute_token_weights",
    "needs_old_entropy",
    "policy_loss",
    "loss_denominator",
    "dynamic_sampling_keep",
    "overlong_penalty",
]


def compute_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor, cfg: AlgorithmConfig
) -> torch.Tensor:
    """rewards [B], group_ids [B] long, response_mask [B, T] -> advantages [B, T] (0 on padding)."""
    adv = ADV_ESTIMATORS.get(cfg.adv_estimator)(rewards, group_ids, cfg)
    return adv.unsqueeze(-1) * response_mask.to(adv.dtype)


def compute_token_weights(
    regions: torch.Tensor,
    response_mask: torch.Tensor,
    old_entropy: torch.Tensor | None,
    progress: float,
    step: int,
    cfg: AlgorithmConfig,
) -> tuple[torch.Tensor | None, dict[str, float]]:
    """-> (weights [B, T] or None for region_weights.mode none, metrics). Call on the whole rollout batch.

    Metrics per region r over valid tokens, for every mode: rest/entropy/r (mean old entropy, when given),
    rest/weight/r (mean weight; 1 when unweighted), rest/share/r (token share). Absent regions report 0.
    """
    weights = compute_region_weights(regions, response_mask, old_entropy, progress, step, cfg.region_weights)
    valid = response_mask > 0
    ids = regions.long()[valid]
    n_valid = max(int(valid.sum().item()), 1)
    w_valid = weights[valid].float() if weights is not None else torch.ones(ids.shape, device=ids.device)
    h_valid = old_entropy.detach().float()[valid] if old_entropy is not None else None
    metrics: dict[str, float] = {}
    for rid, name in enumerate(REGION_NAMES):
        sel = ids == rid
        count = int(sel.sum().item())
        metrics[f"rest/share/{name}"] = count / n_valid
        metrics[f"rest/weight/{name}"] = w_valid[sel].mean().item() if count else 0.0
        if h_valid is not None:
            metrics[f"rest/entropy/{name}"] = h_valid[sel].mean().item() if count else 0.0
    return weights, metrics


def loss_denominator(
    response_mask: torch.Tensor, weights: torch.Tensor | None, cfg: AlgorithmConfig, norm_len: int | None = None
) -> torch.Tensor:
    """Local normaliser D of cfg.loss_agg_mode (sum it over micro-batches and ranks for the global D)."""
    return aggregation_denominator(response_mask, cfg.loss_agg_mode, weights, norm_len or cfg.loss_norm_len)


def policy_loss(
    logprob: torch.Tensor,
    old_logprob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    weights: torch.Tensor | None,
    cfg: AlgorithmConfig,
    denominator: torch.Tensor | None = None,
    norm_len: int | None = None,
    ref_logprob: torch.Tensor | None = None,
    is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Scalar loss = aggregate(m, w, l_t + kl_coef * KL_t) under cfg.loss_agg_mode, plus per-token-mean metrics
    (clip fractions, ppo_kl, kl_loss).

    With kl_coef > 0 (beta) the KL to the reference, estimated per token by cfg.kl_estimator from `ref_logprob`,
    is added before aggregation (same mask, weights and normaliser): l_t + beta * KL_t, as GRPO's objective.
    `is_weights` (rollout correction, `rest.algo.rollout_correction`) multiply the policy-gradient term l_t.
    """
    per_token, metrics = POLICY_LOSSES.get(cfg.policy_loss)(logprob, old_logprob, advantages, response_mask, cfg)
    if is_weights is not None:  # rollout correction: rho_t = min(pi_old / pi_rollout, C), detached
        per_token = per_token * is_weights.to(per_token.dtype)
    if cfg.kl_coef > 0.0:
        if ref_logprob is None:
            raise ValueError("algorithm.kl_coef > 0 needs ref_logprob (a reference model)")
        kl = kl_penalty(logprob, ref_logprob, cfg.kl_estimator)
        metrics["actor/kl_loss"] = masked_mean(kl.detach(), response_mask).item()
        per_token = per_token + cfg.kl_coef * kl
    loss = aggregate(
        per_token,
        response_mask,
        cfg.loss_agg_mode,
        weights=weights,
        norm_len=norm_len or cfg.loss_norm_len,
        denominator=denominator,
    )
    return loss, metrics  # the loss itself is the caller's to report (a micro-batch's is a share of a sum)


def dynamic_sampling_keep(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    return shaping.dynamic_sampling_keep(rewards, group_ids)


def overlong_penalty(response_lengths: torch.Tensor, max_len: int, cfg: AlgorithmConfig) -> torch.Tensor:
    """[B] penalty to add to the reward; zeros when cfg.overlong.enable is false."""
    if not cfg.overlong.enable:
        return torch.zeros(response_lengths.shape, dtype=torch.float32)
    return shaping.overlong_penalty(response_lengths, max_len, cfg.overlong.buffer_len, cfg.overlong.penalty_factor)
