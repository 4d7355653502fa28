"""Outcome advantages, one scalar per response, broadcast over its tokens by the caller.

GRPO (arXiv 2402.03300):   A_i = (R_i - mean_g(R)) / (std_g(R) + eps), std unbiased (n - 1).
Dr.GRPO (arXiv 2503.20783): A_i = R_i - mean_g(R)   (norm_by_std=False).
A group of one response has no baseline: its advantage is 0 (verl instead returns R_i unnormalised).
"""

from __future__ import annotations

import torch

from rest.registry import Registry

# fn(rewards [B], group_ids [B], cfg: AlgorithmConfig) -> advantages [B]
ADV_ESTIMATORS: Registry = Registry("advantage estimator")


def group_stats(values: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-element (group mean, unbiased group std, group size); std is 0 for groups of one."""
    _, inverse = torch.unique(group_ids, return_inverse=True)
    n_groups = int(inverse.max().item()) + 1 if inverse.numel() else 0
    v = values.double()
    count = torch.zeros(n_groups, dtype=torch.float64, device=v.device).index_add_(0, inverse, torch.ones_like(v))
    total = torch.zeros(n_groups, dtype=torch.float64, device=v.device).index_add_(0, inverse, v)
    mean = total / count
    sq = torch.zeros(n_groups, dtype=torch.float64, device=v.device).index_add_(0, inverse, (v - mean[inverse]) ** 2)
    std = torch.where(count > 1, (sq / (count - 1).clamp_min(1)).sqrt(), torch.zeros_like(sq))
    return mean[inverse], std[inverse], count[inverse]


def grpo_advantage(
    rewards: torch.Tensor, group_ids: torch.Tensor, norm_by_std: bool = True, eps: float = 1e-6
) -> torch.Tensor:
    """rewards [B] float, group_ids [B] (any ints; equal id = same prompt) -> advantages [B] float32."""
    if rewards.shape != group_ids.shape or rewards.dim() != 1:
        raise ValueError(f"rewards {tuple(rewards.shape)} and group_ids {tuple(group_ids.shape)} must be [B]")
    mean, std, count = group_stats(rewards, group_ids)
    adv = rewards.double() - mean  # R_i - mean_g
    if norm_by_std:
        adv = adv / (std + eps)  # / (std_g + eps)
    adv = torch.where(count > 1, adv, torch.zeros_like(adv))
    return adv.to(torch.float32)


@ADV_ESTIMATORS.register("grpo")
def _grpo(rewards: torch.Tensor, group_ids: torch.Tensor, cfg) -> torch.Tensor:
    return grpo_advantage(rewards, group_ids, norm_by_std=cfg.norm_adv_by_std)
