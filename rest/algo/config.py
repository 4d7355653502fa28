"""Typed algorithm configuration (dataclasses -> OmegaConf structured configs).

Field types are restricted to int/float/bool/str/Optional/list/nested dataclass so OmegaConf can type-check
them. Call `validate()` once at start: it raises ValueError naming the offending field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from rest.algo.rollout_correction import RolloutCorrectionConfig

REGION_NAMES = ("other", "format", "name", "params", "cot")  # order = Region enum value


def _knots(*pairs: tuple[float, float]) -> List[List[float]]:
    return [[float(a), float(b)] for a, b in pairs]


@dataclass
class CurriculumConfig:
    """Per-region factor c_r(nu) as piecewise-linear knots [[nu, value], ...], constant outside the knots.

    Defaults follow the poster's shape: format high early, params rising mid, CoT rising late, name constant.
    """

    format: List[List[float]] = field(default_factory=lambda: _knots((0.0, 1.5), (0.3, 1.0), (1.0, 1.0)))
    name: List[List[float]] = field(default_factory=lambda: _knots((0.0, 1.0), (1.0, 1.0)))
    params: List[List[float]] = field(default_factory=lambda: _knots((0.0, 0.6), (0.3, 0.6), (0.7, 1.2), (1.0, 1.2)))
    cot: List[List[float]] = field(default_factory=lambda: _knots((0.0, 0.6), (0.6, 0.6), (1.0, 1.0)))
    other: List[List[float]] = field(default_factory=lambda: _knots((0.0, 1.0), (1.0, 1.0)))

    def validate(self, prefix: str = "algorithm.region_weights.curriculum") -> None:
        for region in ("format", "name", "params", "cot", "other"):
            knots = getattr(self, region)
            where = f"{prefix}.{region}"
            if not knots:
                raise ValueError(f"{where} must have at least one [nu, value] knot")
            for knot in knots:
                if len(knot) != 2:
                    raise ValueError(f"{where} knots must be [nu, value] pairs, got {knot}")
                if not 0.0 <= knot[0] <= 1.0 or knot[1] < 0.0:
                    raise ValueError(f"{where} knot {knot}: nu must be in [0, 1] and value >= 0")
            nus = [k[0] for k in knots]
            if nus != sorted(nus):
                raise ValueError(f"{where} knots must be sorted by nu")


@dataclass
class RegionWeightConfig:
    """mode: a weight form of rest.algo.region_weights.WEIGHT_FORMS: none (unweighted), static (official code's
    constants + step ramp), entropy (poster: c_r(nu) / Hbar_r), variance_bound (poster's Theorem 2:
    c_r(nu) / beta_r, beta_r = region mean of 1 - exp(-H_t))."""

    mode: str = "none"
    min_weight: float = 0.001  # clamp before the per-sequence mean-1 normalisation (official: [0.001, 8])
    max_weight: float = 8.0
    entropy_floor: float = 0.01  # H_r (beta_r at this H) is floored so near-deterministic regions get a finite weight
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)

    def validate(self, prefix: str = "algorithm.region_weights") -> None:
        from rest.algo.region_weights import WEIGHT_FORMS

        if self.mode not in WEIGHT_FORMS:
            raise ValueError(f"{prefix}.mode must be one of {'|'.join(WEIGHT_FORMS.names())}, got {self.mode!r}")
        if not 0.0 < self.min_weight <= self.max_weight:
            raise ValueError(f"{prefix}.min_weight must be in (0, max_weight]")
        if self.entropy_floor <= 0.0:
            raise ValueError(f"{prefix}.entropy_floor must be > 0")
        self.curriculum.validate(prefix + ".curriculum")


@dataclass
class RewardConfig:
    """name: a key of rest.tooluse.reward.REWARDS. toolrl: code's step schedule (if schedule=True);
    toolrl_poster: R = beta_accuracy * S_acc * (1 - nu) + beta_format * S_format * nu.
    variant: which published rlla.py the scores reproduce, "rest" (ResT's, the paper's table) or "toolrl";
    accept_arguments_key: also read Hermes' "arguments" key (needed with data.prompt_format=hermes)."""

    name: str = "toolrl"
    schedule: bool = True
    beta_accuracy: float = 1.0
    beta_format: float = 1.0
    variant: str = "rest"
    accept_arguments_key: bool = False

    def validate(self, prefix: str = "algorithm.reward") -> None:
        from rest.tooluse.reward import REWARDS, VARIANTS

        if self.name not in REWARDS:
            raise ValueError(f"{prefix}.name must be one of {REWARDS.names()}, got {self.name!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"{prefix}.variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.beta_accuracy < 0 or self.beta_format < 0:
            raise ValueError(f"{prefix}.beta_accuracy and beta_format must be >= 0")


@dataclass
class DynamicSamplingConfig:
    """DAPO: drop groups whose rewards are all equal; regenerate until the batch is full, at most max_tries."""

    enable: bool = False
    max_tries: int = 10

    def validate(self, prefix: str = "algorithm.dynamic_sampling") -> None:
        if self.max_tries < 1:
            raise ValueError(f"{prefix}.max_tries must be >= 1")


@dataclass
class OverlongConfig:
    """DAPO soft overlong punishment added to the reward; buffer_len = L_cache."""

    enable: bool = False
    buffer_len: int = 512
    penalty_factor: float = 1.0

    def validate(self, prefix: str = "algorithm.overlong") -> None:
        if self.buffer_len < 1:
            raise ValueError(f"{prefix}.buffer_len must be >= 1")
        if self.penalty_factor < 0:
            raise ValueError(f"{prefix}.penalty_factor must be >= 0")


@dataclass
class AlgorithmConfig:
    name: str = "grpo"
    adv_estimator: str = "grpo"
    norm_adv_by_std: bool = True
    policy_loss: str = "ppo_clip"
    clip_low: float = 0.2  # eps_low
    clip_high: float = 0.2  # eps_high
    dual_clip_c: Optional[float] = 3.0  # c; None disables dual clip
    loss_agg_mode: str = "token-mean"
    loss_norm_len: Optional[int] = None  # L_max for seq-mean-token-sum-norm; None: the caller passes norm_len
    kl_coef: float = 0.0  # beta of the KL-to-reference loss term; 0 = no reference model (GRPO paper: 0.04)
    kl_estimator: str = "low_var_kl"  # a key of rest.algo.losses.KL_ESTIMATORS, or `name+` (k2's gradient)
    region_weights: RegionWeightConfig = field(default_factory=RegionWeightConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    dynamic_sampling: DynamicSamplingConfig = field(default_factory=DynamicSamplingConfig)
    overlong: OverlongConfig = field(default_factory=OverlongConfig)
    rollout_correction: RolloutCorrectionConfig = field(default_factory=RolloutCorrectionConfig)

    def validate(self, prefix: str = "algorithm") -> None:
        from rest.algo.advantages import ADV_ESTIMATORS
        from rest.algo.losses import AGG_MODES, POLICY_LOSSES, kl_estimator_names

        if self.adv_estimator not in ADV_ESTIMATORS:
            raise ValueError(f"{prefix}.adv_estimator must be one of {ADV_ESTIMATORS.names()}")
        if self.policy_loss not in POLICY_LOSSES:
            raise ValueError(f"{prefix}.policy_loss must be one of {POLICY_LOSSES.names()}")
        for name in ("clip_low", "clip_high"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{prefix}.{name} must be in (0, 1)")
        if self.dual_clip_c is not None and self.dual_clip_c <= 1.0:
            raise ValueError(f"{prefix}.dual_clip_c must be > 1 (or null)")
        if self.loss_agg_mode not in AGG_MODES:
            raise ValueError(f"{prefix}.loss_agg_mode must be one of {list(AGG_MODES)}")
        if self.loss_norm_len is not None and self.loss_norm_len < 1:
            raise ValueError(f"{prefix}.loss_norm_len must be >= 1 (or null)")
        if self.kl_coef < 0.0:
            raise ValueError(f"{prefix}.kl_coef must be >= 0")
        if self.kl_estimator not in kl_estimator_names():
            raise ValueError(f"{prefix}.kl_estimator must be one of {kl_estimator_names()}, got {self.kl_estimator!r}")
        if self.loss_agg_mode == "weighted-token-mean" and self.region_weights.mode == "none":
            raise ValueError(f"{prefix}.loss_agg_mode weighted-token-mean needs a region_weights.mode other than none")
        self.region_weights.validate(prefix + ".region_weights")
        self.reward.validate(prefix + ".reward")
        self.dynamic_sampling.validate(prefix + ".dynamic_sampling")
        self.overlong.validate(prefix + ".overlong")
        self.rollout_correction.validate(prefix + ".rollout_correction")
