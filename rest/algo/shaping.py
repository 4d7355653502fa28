"""DAPO's batch/reward shaping (arXiv 2503.14476): dynamic-sampling filter and soft overlong punishment."""

from __future__ import annotations

import torch


def dynamic_sampling_keep(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """bool [B]: True for responses whose group has at least two distinct rewards (all-equal groups carry
    zero advantage, so DAPO drops them). Equality is exact (max == min within the group)."""
    _, inverse = torch.unique(group_ids, return_inverse=True)
    n = int(inverse.max().item()) + 1 if inverse.numel() else 0
    r = rewards.double()
    gmax = torch.full((n,), -torch.inf, dtype=torch.float64, device=r.device).scatter_reduce(0, inverse, r, "amax")
    gmin = torch.full((n,), torch.inf, dtype=torch.float64, device=r.device).scatter_reduce(0, inverse, r, "amin")
    return (gmax > gmin)[inverse]


def overlong_penalty(
    response_lengths: torch.Tensor, max_len: int, buffer_len: int, penalty_factor: float = 1.0
) -> torch.Tensor:
    """R_length(y) (added to the reward), with L_max = max_len, L_cache = buffer_len:
    0 if |y| <= L_max - L_cache; (L_max - L_cache - |y|) / L_cache in between; -1 if |y| > L_max;
    all times penalty_factor."""
    y = response_lengths.double()
    soft = float(max_len - buffer_len)
    pen = ((soft - y) / buffer_len).clamp(max=0.0)  # (L_max - L_cache - |y|) / L_cache, <= 0
    pen = torch.where(y > max_len, torch.full_like(pen, -1.0), pen)
    return (pen * penalty_factor).to(torch.float32)
