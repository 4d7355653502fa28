"""Rollout correction formulas pinned by hand-computed cases."""

import math

import pytest
import torch

from rest.algo.rollout_correction import (
    RolloutCorrectionConfig, compute_rollout_correction, effective_sample_size, sequence_is_ratio, sequence_mask,
    token_truncated_is,
)

LN2 = math.log(2.0)
# two sequences, 3 positions; row 0 has 3 valid tokens, row 1 has 2 (last position is padding)
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
ROLLOUT = torch.zeros(2, 3)
# old - rollout = delta: row 0: ln2, 0, -ln2 ; row 1: ln2, ln2, (padding: 50, must be ignored)
OLD = torch.tensor([[LN2, 0.0, -LN2], [LN2, LN2, 50.0]])


def test_token_tis_caps_the_ratio_and_zeroes_padding():
    rho = token_truncated_is(OLD, ROLLOUT, MASK, cap=1.5)
    # exp(ln2) = 2 -> capped at 1.5; exp(0) = 1; exp(-ln2) = 0.5; padding -> 0
    assert torch.allclose(rho, torch.tensor([[1.5, 1.0, 0.5], [1.5, 1.5, 0.0]]))


def test_sequence_ratio_is_the_product_over_valid_tokens():
    ratio = sequence_is_ratio(OLD, ROLLOUT, MASK)
    assert torch.allclose(ratio, torch.tensor([1.0, 4.0]))  # 2 * 1 * 0.5 ; 2 * 2 (padding's 50 ignored)


def test_sequence_mask_band():
    ratio = torch.tensor([0.4, 1.0, 4.0, 5.0])
    assert sequence_mask(ratio, 0.5, 4.0).tolist() == [False, True, True, False]
    assert sequence_mask(ratio, None, 3.0).tolist() == [True, True, False, False]


def test_effective_sample_size():
    mask = torch.ones(1, 4)
    assert effective_sample_size(torch.ones(1, 4), mask) == pytest.approx(1.0)
    # w = [2, 0, 0, 0]: (0.5)^2 / 1 = 0.25
    assert effective_sample_size(torch.tensor([[2.0, 0.0, 0.0, 0.0]]), mask) == pytest.approx(0.25)


def test_combined_correction_masks_then_weights():
    cfg = RolloutCorrectionConfig(token_is_cap=1.5, seq_mask_low=0.5, seq_mask_high=2.0)
    weights, new_mask, metrics = compute_rollout_correction(OLD, ROLLOUT, MASK, cfg)
    # row 1's sequence ratio 4 is outside [0.5, 2]: masked out entirely; row 0 (ratio 1) kept
    assert new_mask.tolist() == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    assert torch.allclose(weights, torch.tensor([[1.5, 1.0, 0.5], [0.0, 0.0, 0.0]]))
    assert metrics["rollout_corr/seq_masked_fraction"] == pytest.approx(0.5)
    # 3 of the 5 valid tokens have ratio 2 > cap 1.5
    assert metrics["rollout_corr/token_capped_fraction"] == pytest.approx(3 / 5)
    # mean raw ratio over valid tokens: (2 + 1 + 0.5 + 2 + 2) / 5
    assert metrics["rollout_corr/ratio_mean"] == pytest.approx(7.5 / 5)
    # k1 = mean(-delta) = -(ln2 + 0 - ln2 + ln2 + ln2) / 5
    assert metrics["rollout_corr/kl"] == pytest.approx(-2 * LN2 / 5)
    # k3 = mean(exp(d) - 1 - d): 3 tokens at ln2 -> 1 - ln2; d=0 -> 0; d=-ln2 -> -0.5 + ln2
    assert metrics["rollout_corr/k3_kl"] == pytest.approx((3 * (1 - LN2) + (-0.5 + LN2)) / 5)
    # kept weights [1.5, 1, 0.5]: mean 1, mean square 3.5/3
    assert metrics["rollout_corr/eff_sample_size"] == pytest.approx(1.0 / (3.5 / 3))


def test_off_changes_nothing():
    weights, new_mask, metrics = compute_rollout_correction(OLD, ROLLOUT, MASK, RolloutCorrectionConfig())
    assert weights is None and torch.equal(new_mask, MASK)
    assert metrics["rollout_corr/eff_sample_size"] == 1.0


def test_weights_are_detached():
    old = OLD.clone().requires_grad_(True)
    weights, _, _ = compute_rollout_correction(old, ROLLOUT, MASK, RolloutCorrectionConfig(token_is_cap=3.0))
    assert not weights.requires_grad


@pytest.mark.parametrize("kwargs, field", [
    ({"token_is_cap": 0.5}, "token_is_cap"),
    ({"seq_mask_low": -1.0}, "seq_mask_low"),
    ({"seq_mask_high": 0.0}, "seq_mask_high"),
    ({"seq_mask_low": 2.0, "seq_mask_high": 1.0}, "seq_mask_low"),
])
def test_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        RolloutCorrectionConfig(**kwargs).validate()


def test_is_weights_multiply_the_policy_gradient_term():
    from rest.algo.config import AlgorithmConfig
    from rest.algo.objective import policy_loss

    cfg = AlgorithmConfig(loss_agg_mode="token-mean")
    logprob = torch.zeros(1, 2)  # ratio 1 everywhere: l_t = -A
    adv = torch.tensor([[1.0, 1.0]])
    mask = torch.ones(1, 2)
    plain, _ = policy_loss(logprob, logprob, adv, mask, None, cfg)
    weighted, _ = policy_loss(logprob, logprob, adv, mask, None, cfg, is_weights=torch.tensor([[2.0, 0.5]]))
    assert float(plain) == pytest.approx(-1.0)
    assert float(weighted) == pytest.approx((-2.0 - 0.5) / 2)  # token-mean of -A * rho_t


def test_the_driver_corrects_the_batch_and_never_fuses_the_old_forward():
    from tensordict import TensorDict

    from rest.config.load import load_config
    from rest.trainer.phases import correct_rollout, fuses_old_log_prob

    cfg = load_config(["algorithm=grpo", "algorithm.rollout_correction.token_is_cap=1.5",
                       "algorithm.rollout_correction.seq_mask_high=2.0"])
    assert not fuses_old_log_prob(cfg)
    batch = TensorDict({"old_log_prob": OLD.clone(), "rollout_log_prob": ROLLOUT.clone(),
                        "response_mask": MASK.clone()}, batch_size=[2])
    corrected, metrics = correct_rollout(batch, cfg.algorithm)
    assert corrected["response_mask"].tolist() == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]  # row 1's ratio 4 > 2
    assert torch.allclose(corrected["rollout_is_weights"], torch.tensor([[1.5, 1.0, 0.5], [0.0, 0.0, 0.0]]))
    assert metrics["rollout_corr/seq_masked_fraction"] == pytest.approx(0.5)
    assert torch.equal(batch["response_mask"], MASK)  # a new batch; the input is left as it was
    off = load_config(["algorithm=grpo"])
    untouched, metrics = correct_rollout(batch, off.algorithm)
    assert metrics == {} and set(untouched.keys()) == {"old_log_prob", "rollout_log_prob", "response_mask"}
