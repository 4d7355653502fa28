"""Rollout correction: the rollout engine (vLLM, bf16 kernels) and the trainer's forward disagree slightly, so the
samples come from pi_rollout, not from the pi_old the PPO ratio assumes. Pure tensors, no I/O.

With delta_t = log pi_old(y_t) - log pi_rollout(y_t) over response tokens (m = response mask):
  token-level truncated IS (TIS, cap C):     rho_t = min(exp(delta_t), C)        multiplies the per-token loss
  sequence-level masked IS (band [lo, hi]):  rho_i = exp(sum_t m delta_t)         sequence kept iff lo <= rho_i <= hi
The weights are detached (they correct the sampling distribution, they are not optimised). Masked sequences
leave the loss and its denominator, as verl's rejection sampling does (`response_mask * rs_mask`).
Metrics (`rollout_corr/*`): mean token ratio before the cap, fraction of tokens capped, fraction of sequences
masked, effective sample size ESS = (mean rho)^2 / mean(rho^2) of the final token weights (1 = no correction),
and the k1 / k3 KL(pi_rollout || pi_old) estimates over valid tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

LOG_RATIO_BOUND = 20.0  # exp(20) ~ 5e8: keeps the exponent finite, as the PPO ratio's clamp does


@dataclass
class RolloutCorrectionConfig:
    """token_is_cap: C of token-level TIS (null: off). seq_mask_low/high: the band of sequence-level masked IS
    (both null: off). TRL's default (sequence mask, cap 3) is seq_mask_high=3; verl's band mode is e.g. 0.5..5."""

    token_is_cap: Optional[float] = None
    seq_mask_low: Optional[float] = None
    seq_mask_high: Optional[float] = None

    @property
    def enabled(self) -> bool:
        return self.token_is_cap is not None or self.seq_mask_low is not None or self.seq_mask_high is not None

    def validate(self, prefix: str = "algorithm.rollout_correction") -> None:
        if self.token_is_cap is not None and self.token_is_cap < 1.0:
            raise ValueError(f"{prefix}.token_is_cap must be >= 1 (a cap on pi_old / pi_rollout), got {self.token_is_cap}")
        if self.seq_mask_low is not None and self.seq_mask_low < 0.0:
            raise ValueError(f"{prefix}.seq_mask_low must be >= 0, got {self.seq_mask_low}")
        if self.seq_mask_high is not None and self.seq_mask_high <= 0.0:
            raise ValueError(f"{prefix}.seq_mask_high must be > 0, got {self.seq_mask_high}")
        if (self.seq_mask_low is not None and self.seq_mask_high is not None
                and self.seq_mask_low >= self.seq_mask_high):
            raise ValueError(f"{prefix}.seq_mask_low ({self.seq_mask_low}) must be < seq_mask_high ({self.seq_mask_high})")


def _log_ratio(old_logprob: torch.Tensor, rollout_logprob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """delta_t = log pi_old - log pi_rollout, 0 off the mask, clamped to +-20."""
    delta = (old_logprob.detach().float() - rollout_logprob.detach().float()).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)
    return torch.where(mask > 0, delta, torch.zeros_like(delta))


def token_truncated_is(old_logprob: torch.Tensor, rollout_logprob: torch.Tensor, mask: torch.Tensor,
                       cap: float) -> torch.Tensor:
    """[B, T] rho_t = min(pi_old / pi_rollout, C) on valid tokens, 0 elsewhere."""
    rho = _log_ratio(old_logprob, rollout_logprob, mask).exp().clamp(max=cap)
    return torch.where(mask > 0, rho, torch.zeros_like(rho))


def sequence_is_ratio(old_logprob: torch.Tensor, rollout_logprob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B] rho_i = prod_t pi_old / pi_rollout over the sequence's valid tokens (exp of the summed log-ratio)."""
    total = _log_ratio(old_logprob, rollout_logprob, mask).sum(-1)
    return total.clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND).exp()


def sequence_mask(seq_ratio: torch.Tensor, low: float | None, high: float | None) -> torch.Tensor:
    """[B] bool: the sequence is kept iff low <= rho_i <= high (a missing bound does not bind)."""
    keep = torch.ones_like(seq_ratio, dtype=torch.bool)
    if low is not None:
        keep &= seq_ratio >= low
    if high is not None:
        keep &= seq_ratio <= high
    return keep


def effective_sample_size(weights: torch.Tensor, mask: torch.Tensor) -> float:
    """(mean w)^2 / mean(w^2) over valid tokens, in (0, 1]; 1 when every weight is equal."""
    w = weights.float()[mask > 0]
    if w.numel() == 0:
        return 1.0
    second = (w * w).mean()
    return float(w.mean() ** 2 / second) if float(second) > 0 else 0.0


def compute_rollout_correction(
    old_logprob: torch.Tensor, rollout_logprob: torch.Tensor, response_mask: torch.Tensor,
    cfg: RolloutCorrectionConfig,
) -> tuple[torch.Tensor | None, torch.Tensor, dict[str, float]]:
    """-> (token IS weights [B, T] or None when TIS is off, corrected response mask [B, T], metrics)."""
    mask = response_mask
    valid = mask > 0
    n_valid = max(int(valid.sum()), 1)
    delta = _log_ratio(old_logprob, rollout_logprob, mask)
    ratio = delta.exp()
    metrics = {
        "rollout_corr/ratio_mean": float(ratio[valid].mean()) if valid.any() else 1.0,
        # KL(pi_rollout || pi_old) from samples of pi_rollout: k1 = -delta, k3 = exp(delta) - 1 - delta
        "rollout_corr/kl": float((-delta)[valid].mean()) if valid.any() else 0.0,
        "rollout_corr/k3_kl": float((ratio - 1.0 - delta)[valid].mean()) if valid.any() else 0.0,
    }
    new_mask = mask
    if cfg.seq_mask_low is not None or cfg.seq_mask_high is not None:
        keep = sequence_mask(sequence_is_ratio(old_logprob, rollout_logprob, mask), cfg.seq_mask_low, cfg.seq_mask_high)
        has_tokens = valid.any(-1)
        metrics["rollout_corr/seq_masked_fraction"] = float((~keep & has_tokens).sum()) / max(int(has_tokens.sum()), 1)
        new_mask = mask * keep.unsqueeze(-1).to(mask.dtype)
    weights = None
    if cfg.token_is_cap is not None:
        weights = token_truncated_is(old_logprob, rollout_logprob, new_mask, cfg.token_is_cap)
        metrics["rollout_corr/token_capped_fraction"] = float(((ratio > cfg.token_is_cap) & valid).sum()) / n_valid
        metrics["rollout_corr/is_weight_mean"] = float(weights[new_mask > 0].mean()) if (new_mask > 0).any() else 1.0
        metrics["rollout_corr/eff_sample_size"] = effective_sample_size(weights, new_mask)
    else:
        metrics["rollout_corr/eff_sample_size"] = 1.0
    return weights, new_mask, metrics
