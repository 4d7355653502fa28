"""Token weights w_t from region labels (ResT's entropy-aware reshaping of the token-level gradient).

Region ids are `rest.tooluse.regions.Region` values: OTHER=0, FORMAT=1, NAME=2, PARAMS=3, COT=4. The weight
forms, chosen by `algorithm.region_weights.mode` (registered in WEIGHT_FORMS):

none: no weights (plain baselines; the loss is unweighted).
static (official code), at training step s:
    w = 1.0 (format), 1.2 (name), min(0.6 + 0.002 s, 1.2) (params), min(0.6 + 0.002 s, 1.0) (cot), 0 (other).
entropy (poster's plain reading, "inverse to entropy"), at training progress nu in [0, 1]:
    w_r = c_r(nu) / max(Hbar_r, h_floor)            Hbar_r = mean old-policy entropy over region r's tokens
variance_bound (poster's Lemma 2 / Theorem 2: w_t* proportional to 1 / beta_t, beta_t = E||grad log pi||^2
    (1 - exp(-H_t)), the gradient-norm factor taken as constant):
    w_r = c_r(nu) / max(beta_r, 1 - exp(-h_floor))  beta_r = mean over region r's tokens of (1 - exp(-H_t))
    One constant weight per region minimising sum_t w_r^2 beta_t at a fixed total weight sum_r n_r w_r is
    w_r proportional to n_r / sum_{t in r} beta_t = 1 / beta_r, so beta_r is the mean of the per-token bound.
The entropy-based forms are then divided by the batch's token mean of w, so the clamps below act on ratios to
an average token; they must see the whole rollout batch, so w does not depend on micro-batching.
All but none then: per sequence, over valid tokens with w > 0: clamp to [min_weight, max_weight], divide by
their mean (mean weight 1). Tokens with w = 0 (padding; 'other' in static mode) drop out of a weighted loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from rest.algo.config import REGION_NAMES, CurriculumConfig, RegionWeightConfig
from rest.registry import Registry

OTHER, FORMAT, NAME, PARAMS, COT = range(5)

# fn(regions [B, T], mask [B, T], old_entropy [B, T] or None, progress nu, step s, cfg) -> w [B, T] or None
WeightFn = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor], float, int, RegionWeightConfig],
                    Optional[torch.Tensor]]


@dataclass(frozen=True)
class WeightForm:
    fn: WeightFn
    needs_old_entropy: bool  # the old policy's per-token entropy must be computed before the update


WEIGHT_FORMS: Registry[WeightForm] = Registry("region weight form (algorithm.region_weights.mode)")


def register_weight_form(name: str, needs_old_entropy: bool) -> Callable[[WeightFn], WeightFn]:
    def decorator(fn: WeightFn) -> WeightFn:
        WEIGHT_FORMS.register(name)(WeightForm(fn, needs_old_entropy))
        return fn

    return decorator


def needs_old_entropy(mode: str) -> bool:
    """Whether region_weights.mode `mode` reads the old policy's entropy (so the old-policy forward must run
    before the update and cannot be fused into it)."""
    return WEIGHT_FORMS.get(mode).needs_old_entropy


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


def region_mean(regions: torch.Tensor, mask: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean of `values` per region [5], token count per region [5]) over valid tokens; 0 for an absent region."""
    valid = mask > 0
    ids = regions.long()[valid]
    v = values.detach().float()[valid]
    count = torch.zeros(len(REGION_NAMES), device=v.device).index_add_(0, ids, torch.ones_like(v))
    total = torch.zeros(len(REGION_NAMES), device=v.device).index_add_(0, ids, v)
    return total / count.clamp_min(1.0), count


def inverse_region_weights(
    regions: torch.Tensor, mask: torch.Tensor, per_region_cost: torch.Tensor, progress: float, cfg: RegionWeightConfig
) -> torch.Tensor:
    """w_t = c_r(nu) / cost_r for t in region r, over the batch's token mean of w, then per-sequence mean 1."""
    per_region = curriculum_factors(cfg.curriculum, progress).to(per_region_cost.device) / per_region_cost
    raw = per_region[regions.long()]
    m = mask.float()
    batch_mean = (raw * m).sum() / m.sum().clamp_min(1.0)
    raw = raw / batch_mean.clamp_min(1e-12)
    return normalise_per_sequence(raw, mask, cfg.min_weight, cfg.max_weight)


@register_weight_form("none", needs_old_entropy=False)
def no_region_weights(regions, mask, old_entropy, progress, step, cfg) -> None:
    return None


@register_weight_form("static", needs_old_entropy=False)
def static_region_weights(regions, mask, old_entropy, progress, step, cfg) -> torch.Tensor:
    raw = static_region_values(step).to(mask.device)[regions.long()]
    return normalise_per_sequence(raw, mask, cfg.min_weight, cfg.max_weight)


@register_weight_form("entropy", needs_old_entropy=True)
def entropy_region_weights(regions, mask, old_entropy, progress, step, cfg) -> torch.Tensor:
    hbar, _ = region_mean(regions, mask, old_entropy)
    return inverse_region_weights(regions, mask, hbar.clamp_min(cfg.entropy_floor), progress, cfg)  # c_r / H_r


@register_weight_form("variance_bound", needs_old_entropy=True)
def variance_bound_region_weights(regions, mask, old_entropy, progress, step, cfg) -> torch.Tensor:
    beta, _ = region_mean(regions, mask, -torch.expm1(-old_entropy.detach().float()))  # beta_t = 1 - exp(-H_t)
    floor = -math.expm1(-cfg.entropy_floor)  # the bound at H = h_floor
    return inverse_region_weights(regions, mask, beta.clamp_min(floor), progress, cfg)  # c_r / beta_r


def compute_region_weights(
    regions: torch.Tensor,
    mask: torch.Tensor,
    old_entropy: torch.Tensor | None,
    progress: float,
    step: int,
    cfg: RegionWeightConfig,
) -> torch.Tensor | None:
    """[B, T] weights for cfg.mode (a name in WEIGHT_FORMS); None for mode none (plain baselines)."""
    form = WEIGHT_FORMS.get(cfg.mode)
    if form.needs_old_entropy and old_entropy is None:
        raise ValueError(f"region_weights.mode={cfg.mode} needs the old policy's per-token entropy")
    return form.fn(regions, mask, old_entropy, progress, step, cfg)
