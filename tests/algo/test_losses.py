import math
import types

import pytest
import torch

from rest.algo.losses import POLICY_LOSSES, aggregate, aggregation_denominator, k3_kl, ppo_clip_token_loss

LOSS = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 0.0, 0.0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
W = torch.tensor([[1.0, 0.0, 2.0, 5.0], [0.5, 1.0, 0.0, 0.0]])


def _ppo(ratios, advs, clip_low=0.2, clip_high=0.2, dual=3.0):
    logp = torch.log(torch.tensor(ratios))
    return ppo_clip_token_loss(logp, torch.zeros_like(logp), torch.tensor(advs), clip_low, clip_high, dual)


def test_ppo_clip_higher_and_dual_clip_hand_computed():
    loss, info = _ppo([1.5, 0.5, 0.5, 5.0, 1.2], [1.0, 1.0, -1.0, -1.0, -2.0], 0.2, 0.28, 3.0)
    # 1) A=1,r=1.5: max(-1.5, -1.28) = -1.28 (clipped)   2) A=1,r=0.5: max(-0.5, -0.8) = -0.5
    # 3) A=-1,r=0.5: max(0.5, 0.8) = 0.8 (clipped)      4) A=-1,r=5: max(5, 1.28) = 5 -> dual min(5, 3) = 3
    # 5) A=-2,r=1.2: inside the clip range: 2.4
    assert loss.tolist() == pytest.approx([-1.28, -0.5, 0.8, 3.0, 2.4], abs=1e-6)
    assert info["clipped"].tolist() == [True, False, True, False, False]
    assert info["dual_clipped"].tolist() == [False, False, False, True, False]


def test_ppo_symmetric_clip_without_dual():
    loss, _ = _ppo([1.5, 5.0], [1.0, -1.0], 0.2, 0.2, None)
    assert loss.tolist() == pytest.approx([-1.2, 5.0], abs=1e-6)


def test_ratio_is_clamped_in_log_space():
    loss, _ = ppo_clip_token_loss(torch.tensor([100.0]), torch.tensor([0.0]), torch.tensor([-1.0]), 0.2, 0.2, None)
    assert loss.item() == pytest.approx(math.exp(20.0), rel=1e-5)


def test_ppo_kl_reports_the_clamped_log_ratio_the_loss_uses():
    # log r = [100, -50, 0.5] -> clamped [20, -20, 0.5]; ppo_kl = mean(-log r) over the mask
    logprob, old = torch.tensor([[100.0, -50.0, 0.5]]), torch.zeros(1, 3)
    _, info = ppo_clip_token_loss(logprob, old, torch.ones(1, 3), 0.2, 0.2, None)
    assert info["neg_log_ratio"].tolist() == [[-20.0, 20.0, -0.5]]
    cfg = types.SimpleNamespace(clip_low=0.2, clip_high=0.2, dual_clip_c=None)
    _, metrics = POLICY_LOSSES.get("ppo_clip")(logprob, old, torch.ones(1, 3), torch.ones(1, 3), cfg)
    assert metrics["actor/ppo_kl"] == pytest.approx(-0.5 / 3)  # unclamped would be -50.5 / 3


def test_token_mean():
    assert aggregate(LOSS, MASK, "token-mean").item() == pytest.approx(17 / 5)  # (1+2+3+5+6) / 5
    assert aggregate(LOSS, MASK, "token-mean", weights=W).item() == pytest.approx(15.5 / 5)


def test_seq_mean_token_mean():
    assert aggregate(LOSS, MASK, "seq-mean-token-mean").item() == pytest.approx((6 / 3 + 11 / 2) / 2)  # 3.75


def test_seq_mean_token_sum_norm():
    assert aggregate(LOSS, MASK, "seq-mean-token-sum-norm", norm_len=4).item() == pytest.approx((6 / 4 + 11 / 4) / 2)
    with pytest.raises(ValueError):
        aggregate(LOSS, MASK, "seq-mean-token-sum-norm")


def test_weighted_token_mean_official_formula():
    # sum m w l = 1 + 0 + 6 + 2.5 + 6 = 15.5 ; sum m w = 1 + 0 + 2 + 0.5 + 1 = 4.5
    assert aggregate(LOSS, MASK, "weighted-token-mean", weights=W).item() == pytest.approx(15.5 / (4.5 + 1e-8))


def test_unknown_mode_and_empty_sequences():
    with pytest.raises(ValueError):
        aggregate(LOSS, MASK, "mean")
    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 0, 0]])  # an empty row does not count as a sequence
    assert aggregation_denominator(mask, "seq-mean-token-mean").item() == 1.0
    assert aggregate(LOSS, mask, "seq-mean-token-mean").item() == pytest.approx(2.0)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm", "weighted-token-mean"])
def test_split_batch_with_global_denominator_equals_whole(mode):
    g = torch.Generator().manual_seed(3)
    loss = torch.randn(11, 9, generator=g)
    mask = (torch.rand(11, 9, generator=g) > 0.3).long()
    mask[4] = 0
    weights = torch.rand(11, 9, generator=g) * 2
    whole = aggregate(loss, mask, mode, weights=weights, norm_len=9)
    pieces = [slice(0, 2), slice(2, 3), slice(3, 7), slice(7, 11)]  # "micro-batches on ranks"
    global_d = sum(aggregation_denominator(mask[p], mode, weights[p], 9) for p in pieces)
    total = sum(aggregate(loss[p], mask[p], mode, weights=weights[p], norm_len=9, denominator=global_d) for p in pieces)
    assert total.item() == pytest.approx(whole.item(), rel=1e-5, abs=1e-6)


def test_k3_kl_hand_computed():
    # d = ref - logp = ln 2: e^d - d - 1 = 1 - ln 2 ; equal policies -> 0
    kl = k3_kl(torch.tensor([0.0, -1.0]), torch.tensor([math.log(2.0), -1.0]))
    assert kl.tolist() == pytest.approx([1 - math.log(2.0), 0.0], abs=1e-6)
