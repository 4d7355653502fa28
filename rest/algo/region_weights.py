"""Token weights w_t from region labels (ResT's entropy-aware reshaping of the token-level gradient).

Region ids are `rest.tooluse.regions.Region` values: OTHER=0, FORMAT=1, NAME=2, PARAMS=3, COT=4.

static (official code), at training step s:
    w = 1.0 (format), 1.2 (name), min(0.6 + 0.002 s, 1.2) (params), min(0.6 + 0.002 s, 1.0) (cot), 0 (other).
entropy (poster), at training progress nu in [0, 1]:
    w_r = c_r(nu) / max(Hbar_r, h_floor)        Hbar_r = mean old-policy entropy of region r over the batch
    then divided by the batch's token mean of w, so the clamps below act on ratios to an average token.
    `entropy_region_weights` must see the whole rollout batch, so w does not depend on micro-batching.
Both then: per sequence, over valid tokens with w > 0: clamp to [min_weight, max_weight], divide by their
mean (mean weight 1). Tokens with w = 0 (padding; 'other' in static mode) drop out of a weighted loss.
"""

from __future__ import annotations

import torch

from rest.algo.config import REGION_NAMES, CurriculumConfig, RegionWeightConfig

OTHER, FORMAT, NAME, PARAMS, COT = range(5)


def interpolate_knots(knots: list[list[float]], nu: float) -> float:
    """Piecewise-linear c(nu) through [[nu_k, value_k], ...], constant before the first / after the last."""
    if nu <= knots[0][0]:
        return float(knots[0][1])
    for (x0, y0), (x1, y1) in zip(knots, knots[1:]):
        if nu <= x1:
            if x1 == x0:
                return float(y1)
            return float(y0 + (y1 - y0) * (nu - x0) / (x1 - x0))
    return float(knots[-1][1])


def curriculum_factors(cfg: CurriculumConfig, progress: float) -> torch.Tensor:
    """c_r(nu) for every region, indexed by region id."""
    return torch.tensor([interpolate_knots(getattr(cfg, r), progress) for r in REGION_NAMES], dtype=torch.float32)


def static_region_values(step: int) -> torch.Tensor:
    """Official code's per-region constants at step s, indexed by region id."""
    params = min(0.6 + 0.002 * step, 1.2)
    cot = min(0.6 + 0.002 * step, 1.0)
    return torch.tensor([0.0, 1.0, 1.2, params, cot], dtype=torch.float32)


def normalise_per_sequence(
    raw: torch.Tensor, mask: torch.Tensor, min_weight: float, max_weight: float
) -> torch.Tensor:
    """Per row, over valid tokens with raw > 0: clamp to [min, max] then divide by their mean; others -> 0."""
    active = (mask > 0) & (raw > 0)
    w = torch.where(active, raw.clamp(min_weight, max_weight), torch.zeros_like(raw))
    count = active.float().sum(-1, keepdim=True)
    mean = w.sum(-1, keepdim=True) / count.clamp_min(1.0)
    return torch.where(active, w / mean.clamp_min(1e-12), torch.zeros_like(w))


def static_region_weights(regions: torch.Tensor, mask: torch.Tensor, step: int, cfg: RegionWeightConfig) -> torch.Tensor:
    raw = static_region_values(step).to(mask.device)[regions.long()]
    return normalise_per_sequence(raw, mask, cfg.min_weight, cfg.max_weight)


def region_mean_entropy(regions: torch.Tensor, mask: torch.Tensor, entropy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Hbar_r [5], token count_r [5]) over valid tokens; Hbar_r = 0 for an absent region."""
    valid = mask > 0
    ids = regions.long()[valid]
    ent = entropy.detach().float()[valid]
    count = torch.zeros(len(REGION_NAMES), device=ent.device).index_add_(0, ids, torch.ones_like(ent))
    total = torch.zeros(len(REGION_NAMES), device=ent.device).index_add_(0, ids, ent)
    return total / count.clamp_min(1.0), count


def entropy_region_weights(
    regions: torch.Tensor, mask: torch.Tensor, old_entropy: torch.Tensor, progress: float, cfg: RegionWeightConfig
) -> torch.Tensor:
    hbar, _ = region_mean_entropy(regions, mask, old_entropy)
    per_region = curriculum_factors(cfg.curriculum, progress).to(hbar.device) / hbar.clamp_min(cfg.entropy_floor)  # c_r / H_r
    raw = per_region[regions.long()]
    m = mask.float()
    batch_mean = (raw * m).sum() / m.sum().clamp_min(1.0)
    raw = raw / batch_mean.clamp_min(1e-12)
    return normalise_per_sequence(raw, mask, cfg.min_weight, cfg.max_weight)


def compute_region_weights(
    regions: torch.Tensor,
    mask: torch.Tensor,
    old_entropy: torch.Tensor | None,
    progress: float,
    step: int,
    cfg: RegionWeightConfig,
) -> torch.Tensor | None:
    """[B, T] weights for cfg.mode static|entropy; None for mode none (plain baselines)."""
    if cfg.mode == "none":
        return None
    if cfg.mode == "static":
        return static_region_weights(regions, mask, step, cfg)
    if cfg.mode == "entropy":
        if old_entropy is None:
            raise ValueError("region_weights.mode=entropy needs the old policy's per-token entropy")
        return entropy_region_weights(regions, mask, old_entropy, progress, cfg)
    raise ValueError(f"unknown region_weights.mode {cfg.mode!r}")
