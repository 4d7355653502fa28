"""Per-token policy losses and the aggregation of a [B, T] loss into a scalar.

Aggregation modes (m = response mask, w = token weights or 1, l = per-token loss, B = sequences with at least
one valid token, L_max = norm_len):
  token-mean               L = sum_{i,t} m w l / sum_{i,t} m                  (DAPO; verl's default)
  seq-mean-token-mean      L = (1/B) sum_i (sum_t m w l / sum_t m)            (GRPO paper)
  seq-mean-token-sum-norm  L = (1/B) sum_i sum_t m w l / L_max               (Dr.GRPO)
  weighted-token-mean      L = sum_{i,t} m w l / (sum_{i,t} m w + 1e-8)      (ResT official code)

Distributed exactness: every mode is  numerator(local rows) / D  with D from `aggregation_denominator`.
Summing `aggregate(..., denominator=D_global)` over micro-batches and ranks, with D_global the all-reduced sum
of the local denominators, equals `aggregate` of the whole batch.
"""

from __future__ import annotations

import torch

from rest.registry import Registry

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm", "weighted-token-mean")
WEIGHTED_EPS = 1e-8  # official code: sum m*w + 1e-8

# fn(logprob, old_logprob, advantages [B,T], response_mask, cfg) -> (per-token loss [B,T], metrics dict)
POLICY_LOSSES: Registry = Registry("policy loss")


def _check_mode(mode: str) -> None:
    if mode not in AGG_MODES:
        raise ValueError(f"unknown loss_agg_mode {mode!r}; available: {list(AGG_MODES)}")


def aggregation_denominator(
    mask: torch.Tensor, mode: str, weights: torch.Tensor | None = None, norm_len: int | None = None
) -> torch.Tensor:
    """The local normaliser D (0-d fp32): token count, sum m*w, or number of non-empty sequences."""
    _check_mode(mode)
    m = mask.float()
    if mode == "token-mean":
        return m.sum()
    if mode == "weighted-token-mean":
        return (m * weights.float()).sum() if weights is not None else m.sum()
    return (m.sum(-1) > 0).float().sum()  # both seq-mean modes: B


def aggregate(
    loss: torch.Tensor,
    mask: torch.Tensor,
    mode: str,
    weights: torch.Tensor | None = None,
    norm_len: int | None = None,
    denominator: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """loss, mask, weights [B, T] -> scalar. `denominator` replaces the local D (see module docstring)."""
    _check_mode(mode)
    m = mask.to(loss.dtype)
    wl = loss * weights.to(loss.dtype) if weights is not None else loss
    if denominator is None:
        denominator = aggregation_denominator(mask, mode, weights, norm_len)
    d = torch.as_tensor(denominator, dtype=loss.dtype, device=loss.device)
    if mode == "token-mean":
        return (m * wl).sum() / d.clamp_min(1.0)
    if mode == "weighted-token-mean":
        return (m * wl).sum() / (d + WEIGHTED_EPS)
    if mode == "seq-mean-token-mean":
        per_seq = (m * wl).sum(-1) / m.sum(-1).clamp_min(1.0)  # sum_t m w l / sum_t m
        return per_seq.sum() / d.clamp_min(1.0)
    if norm_len is None or norm_len <= 0:
        raise ValueError("seq-mean-token-sum-norm needs norm_len = L_max > 0 (algorithm.loss_norm_len)")
    per_seq = (m * wl).sum(-1) / float(norm_len)  # sum_t m w l / L_max
    return per_seq.sum() / d.clamp_min(1.0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def ppo_clip_token_loss(
    logprob: torch.Tensor,
    old_logprob: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float,
    clip_high: float,
    dual_clip_c: float | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-clip with asymmetric clip (DAPO clip-higher) and optional dual clip. Returns per-token loss."""
    log_ratio = (logprob - old_logprob).clamp(-20.0, 20.0)
    ratio = log_ratio.exp()  # r_t = pi / pi_old
    unclipped = -advantages * ratio  # -A r
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)  # -A clip(r, 1-eps_low, 1+eps_high)
    loss = torch.maximum(unclipped, clipped)
    info = {"clipped": (clipped > unclipped), "dual_clipped": torch.zeros_like(loss, dtype=torch.bool)}
    if dual_clip_c is not None:
        bound = -advantages * dual_clip_c  # -c A (positive for A < 0)
        dual = (advantages < 0) & (loss > bound)
        loss = torch.where(dual, bound, loss)  # l = min(l, -c A) for A < 0
        info["dual_clipped"] = dual
    info["neg_log_ratio"] = -log_ratio  # of the clamped log-ratio the loss uses (verl's ppo_kl: -log r)
    return loss, info


@POLICY_LOSSES.register("ppo_clip")
def _ppo_clip(logprob, old_logprob, advantages, response_mask, cfg):
    loss, info = ppo_clip_token_loss(
        logprob, old_logprob, advantages, cfg.clip_low, cfg.clip_high, cfg.dual_clip_c
    )
    metrics = {
        "actor/pg_clipfrac": masked_mean(info["clipped"].float(), response_mask).item(),
        "actor/pg_clipfrac_lower": masked_mean(info["dual_clipped"].float(), response_mask).item(),
        "actor/ppo_kl": masked_mean(info["neg_log_ratio"].detach().float(), response_mask).item(),
    }
    return loss, metrics


# fn(logprob, ref_logprob) -> per-token estimate [B, T] of KL(pi || pi_ref), from samples of pi (Schulman 2020,
# http://joschu.net/blog/kl-approx.html). With d = log pi_ref - log pi = -log r:
KL_ESTIMATORS: Registry = Registry("KL estimator")
LOG_RATIO_CLAMP = 20.0  # |d| <= 20 before exp (verl: numerical stability)
K3_CLAMP = 10.0  # the k3 value itself is clamped to [-10, 10] (verl)


@KL_ESTIMATORS.register("k1")
def k1_kl(logprob: torch.Tensor, ref_logprob: torch.Tensor) -> torch.Tensor:
    """k1 = log pi - log pi_ref: unbiased, high variance, can be negative."""
    return logprob - ref_logprob


@KL_ESTIMATORS.register("abs")
def abs_kl(logprob: torch.Tensor, ref_logprob: torch.Tensor) -> torch.Tensor:
    """|log pi - log pi_ref|."""
    return (logprob - ref_logprob).abs()


@KL_ESTIMATORS.register("k2")
def k2_kl(logprob: torch.Tensor, ref_logprob: torch.Tensor) -> torch.Tensor:
    """k2 = 1/2 (log pi - log pi_ref)^2: biased, low variance; its gradient is the KL's in expectation."""
    return 0.5 * (logprob - ref_logprob).square()


@KL_ESTIMATORS.register("k3")
@KL_ESTIMATORS.register("low_var_kl")  # verl's name for the same clamped k3
def k3_kl(logprob: torch.Tensor, ref_logprob: torch.Tensor) -> torch.Tensor:
    """k3 = exp(d) - d - 1, d = log pi_ref - log pi (GRPO's D_KL): unbiased, >= 0; d clamped to [-20, 20] and
    the value to [-10, 10] as verl's low_var_kl."""
    d = (ref_logprob - logprob).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return (d.exp() - d - 1.0).clamp(-K3_CLAMP, K3_CLAMP)


def kl_estimator_names() -> list[str]:
    """Every accepted algorithm.kl_estimator: the registered names, and `name+` for those other than k2."""
    names = KL_ESTIMATORS.names()
    return names + [f"{name}+" for name in names if name != "k2"]


def kl_penalty(logprob: torch.Tensor, ref_logprob: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token KL estimate by name. `name+` (verl's straight-through): the value of `name`, the gradient of
    k2 (k1's and k3's expected gradients are not the KL's; k2's is)."""
    if not estimator.endswith("+"):
        return KL_ESTIMATORS.get(estimator)(logprob, ref_logprob)
    value = KL_ESTIMATORS.get(estimator[:-1])(logprob, ref_logprob)
    surrogate = k2_kl(logprob, ref_logprob)
    return surrogate - surrogate.detach() + value.detach()
