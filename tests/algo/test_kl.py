"""The KL-to-reference estimators (verl's kl_penalty names) and the KL term of the policy loss, by hand.

d = log pi_ref - log pi; with d = +-ln 2 every estimator has a closed form:
    k1 = -d, abs = |d|, k2 = d^2 / 2, k3 = low_var_kl = e^d - d - 1  (clamped: d to [-20, 20], k3 to [-10, 10])
"""

import math
import re

import pytest
import torch

from rest.algo.config import AlgorithmConfig
from rest.algo.losses import KL_ESTIMATORS, kl_estimator_names, kl_penalty
from rest.algo.objective import policy_loss

LN2 = math.log(2.0)
LOGP = torch.tensor([0.0, 0.0, -1.0])
REF = torch.tensor([LN2, -LN2, -1.0])  # d = ln 2, -ln 2, 0


@pytest.mark.parametrize("name, expected", [
    ("k1", [-LN2, LN2, 0.0]),
    ("abs", [LN2, LN2, 0.0]),
    ("k2", [LN2**2 / 2, LN2**2 / 2, 0.0]),
    ("k3", [1 - LN2, LN2 - 0.5, 0.0]),  # e^ln2 - ln2 - 1 ; 1/2 + ln2 - 1
    ("low_var_kl", [1 - LN2, LN2 - 0.5, 0.0]),
])
def test_estimators_hand_computed(name, expected):
    assert kl_penalty(LOGP, REF, name).tolist() == pytest.approx(expected, abs=1e-6)


def test_k3_clamps_the_log_ratio_then_the_value_as_verl():
    d = torch.tensor([25.0, -25.0, 3.0, -3.0])
    kl = kl_penalty(torch.zeros(4), d, "k3")
    # e^20 - 21 -> 10 ; e^-20 + 20 - 1 ~ 19 -> 10 ; e^3 - 4 = 16.1 -> 10 ; e^-3 + 3 - 1 = 2.0498 (unclamped)
    assert kl.tolist() == pytest.approx([10.0, 10.0, 10.0, math.exp(-3) + 2.0], abs=1e-5)


def test_straight_through_keeps_the_value_and_takes_k2s_gradient():
    for name in ("k1", "k3", "low_var_kl", "abs"):
        logp = LOGP.clone().requires_grad_(True)
        kl = kl_penalty(logp, REF, name + "+")
        assert kl.detach().tolist() == pytest.approx(kl_penalty(LOGP, REF, name).tolist(), abs=1e-6)
        kl.sum().backward()
        assert logp.grad.tolist() == pytest.approx((LOGP - REF).tolist(), abs=1e-6)  # d/dlogp of (logp-ref)^2/2


def test_k3_gradient_is_one_minus_the_ratio():
    logp = LOGP.clone().requires_grad_(True)
    kl_penalty(logp, REF, "k3").sum().backward()
    assert logp.grad.tolist() == pytest.approx([1 - 2.0, 1 - 0.5, 0.0], abs=1e-6)  # d/dlogp = 1 - e^d


def test_names_and_unknown_estimator():
    assert KL_ESTIMATORS.names() == ["abs", "k1", "k2", "k3", "low_var_kl"]
    assert "k3+" in kl_estimator_names() and "k2+" not in kl_estimator_names()
    with pytest.raises(KeyError, match="k4"):
        kl_penalty(LOGP, REF, "k4")


@pytest.mark.parametrize("estimator, bad", [("k4", "k4"), ("k2+", "k2+")])
def test_config_names_a_bad_estimator(estimator, bad):
    with pytest.raises(ValueError, match=r"algorithm\.kl_estimator.*" + re.escape(bad)):
        AlgorithmConfig(kl_estimator=estimator).validate()


def _loss(cfg, ref, logp=None, mask=None):
    logp = torch.zeros(2, 3) if logp is None else logp
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]]) if mask is None else mask
    # A = 0: the PPO term is 0, the loss is beta times the aggregated KL
    return policy_loss(logp, logp.detach(), torch.zeros(2, 3), mask, None, cfg, ref_logprob=ref)


REF_2x3 = torch.tensor([[LN2, -LN2, 7.0], [LN2, 7.0, 7.0]])  # padding holds junk: it must not count


def test_kl_term_token_mean_hand_computed():
    loss, metrics = _loss(AlgorithmConfig(kl_coef=0.04, kl_estimator="k3"), REF_2x3)
    mean_kl = ((1 - LN2) + (LN2 - 0.5) + (1 - LN2)) / 3  # three valid tokens
    assert metrics["actor/kl_loss"] == pytest.approx(mean_kl, abs=1e-6)
    assert loss.item() == pytest.approx(0.04 * mean_kl, abs=1e-7)


def test_kl_term_follows_the_aggregation_mode():
    # GRPO's seq-mean-token-mean: row 0 mean (1 - ln2 + ln2 - 0.5) / 2 = 0.25, row 1: 1 - ln2
    cfg = AlgorithmConfig(kl_coef=0.04, kl_estimator="k3", loss_agg_mode="seq-mean-token-mean")
    loss, _ = _loss(cfg, REF_2x3)
    assert loss.item() == pytest.approx(0.04 * (0.25 + 1 - LN2) / 2, abs=1e-7)


def test_kl_gradient_reaches_the_policy():
    logp = torch.zeros(2, 3, requires_grad=True)
    loss, _ = _loss(AlgorithmConfig(kl_coef=0.5, kl_estimator="k3"), REF_2x3, logp=logp)
    loss.backward()
    # d/dlogp of 0.5 * k3 / 3 tokens = 0.5 (1 - e^d) / 3; padding gets nothing
    expected = [[0.5 * (1 - 2.0) / 3, 0.5 * (1 - 0.5) / 3, 0.0], [0.5 * (1 - 2.0) / 3, 0.0, 0.0]]
    assert logp.grad.tolist() == [pytest.approx(row, abs=1e-6) for row in expected]


def test_no_kl_term_without_kl_coef():
    loss, metrics = _loss(AlgorithmConfig(kl_coef=0.0), REF_2x3)
    assert loss.item() == 0.0 and "actor/kl_loss" not in metrics
