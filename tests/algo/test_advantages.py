import math

import pytest
import torch

from rest.algo.advantages import ADV_ESTIMATORS, grpo_advantage


def test_grpo_with_std_hand_computed():
    # group 0: R = 1, 2, 3 -> mean 2, unbiased std 1; group 1: R = 10, 10 -> std 0 -> A = 0
    adv = grpo_advantage(torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0]), torch.tensor([0, 0, 0, 1, 1]))
    e = 1.0 / (1.0 + 1e-6)
    assert adv.tolist() == pytest.approx([-e, 0.0, e, 0.0, 0.0], abs=1e-7)


def test_std_is_unbiased():
    # R = 0, 4: mean 2, unbiased std sqrt(8 / 1) = 2 sqrt 2 -> A = -+ 1/sqrt 2 (biased std would give -+1)
    adv = grpo_advantage(torch.tensor([0.0, 4.0]), torch.tensor([5, 5]))
    assert adv.tolist() == pytest.approx([-1 / math.sqrt(2), 1 / math.sqrt(2)], abs=1e-6)


def test_drgrpo_no_std():
    adv = grpo_advantage(torch.tensor([1.0, 2.0, 6.0, 0.0, 4.0]), torch.tensor([0, 0, 0, 9, 9]), norm_by_std=False)
    assert adv.tolist() == pytest.approx([-2.0, -1.0, 3.0, -2.0, 2.0])


def test_interleaved_groups_and_singletons():
    adv = grpo_advantage(torch.tensor([1.0, 5.0, 3.0, 7.0]), torch.tensor([3, 1, 3, 2]), norm_by_std=False)
    assert adv.tolist() == pytest.approx([-1.0, 0.0, 1.0, 0.0])  # groups of one have no baseline -> 0


def test_registry_respects_config():
    class Cfg:
        norm_adv_by_std = False

    adv = ADV_ESTIMATORS.get("grpo")(torch.tensor([0.0, 4.0]), torch.tensor([0, 0]), Cfg())
    assert adv.tolist() == pytest.approx([-2.0, 2.0])
    with pytest.raises(ValueError):
        grpo_advantage(torch.zeros(3), torch.zeros(2, dtype=torch.long))
