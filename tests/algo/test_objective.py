import dataclasses
import re

import pytest
import torch
from omegaconf import OmegaConf

from rest.algo.config import AlgorithmConfig, RegionWeightConfig
from rest.algo.objective import (
    compute_advantages,
    compute_token_weights,
    dynamic_sampling_keep,
    loss_denominator,
    needs_old_entropy,
    overlong_penalty,
    policy_loss,
)
from rest.algo.shaping import overlong_penalty as raw_overlong


def test_compute_advantages_broadcast_and_mask():
    cfg = AlgorithmConfig(norm_adv_by_std=False)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    adv = compute_advantages(torch.tensor([1.0, 3.0]), torch.tensor([0, 0]), mask, cfg)
    assert adv.tolist() == [[-1.0, -1.0, 0.0], [1.0, 0.0, 0.0]]


def test_token_weights_metrics():
    cfg = AlgorithmConfig(region_weights=RegionWeightConfig(mode="static"), loss_agg_mode="weighted-token-mean")
    regions = torch.tensor([[1, 2, 0, 4]])
    mask = torch.tensor([[1, 1, 1, 0]])
    ent = torch.tensor([[0.1, 0.3, 2.0, 9.0]])
    w, m = compute_token_weights(regions, mask, ent, 0.5, 0, cfg)
    assert w[0].tolist() == pytest.approx([1 / 1.1, 1.2 / 1.1, 0.0, 0.0], abs=1e-6)
    assert m["rest/share/format"] == pytest.approx(1 / 3) and m["rest/share/cot"] == 0.0
    assert m["rest/entropy/other"] == pytest.approx(2.0) and m["rest/entropy/name"] == pytest.approx(0.3)
    assert m["rest/weight/name"] == pytest.approx(1.2 / 1.1)
    w, m = compute_token_weights(regions, mask, None, 0.5, 0, AlgorithmConfig())
    assert w is None and m["rest/weight/format"] == 1.0 and "rest/entropy/format" not in m


def test_token_weights_metrics_variance_bound_and_unweighted_with_entropy():
    regions = torch.tensor([[1, 3, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    ent = torch.tensor([[0.05, 1.0, 1.0, 9.0]])
    flat = [[0.0, 1.0]]
    rw = RegionWeightConfig(mode="variance_bound")
    rw.curriculum.format = rw.curriculum.params = flat
    cfg = AlgorithmConfig(region_weights=rw, loss_agg_mode="weighted-token-mean")
    w, m = compute_token_weights(regions, mask, ent, 0.5, 0, cfg)
    # beta: format 1 - e^-0.05 = 0.0487706, params 1 - e^-1 = 0.6321206 -> raw 20.504166, 1.581977, 1.581977
    # mean 7.889373 -> 2.598960, 0.200520, 0.200520 ; padding 0
    assert w[0].tolist() == pytest.approx([2.598960, 0.200520, 0.200520, 0.0], rel=1e-5)
    assert m["rest/weight/format"] == pytest.approx(2.598960, rel=1e-5)
    assert m["rest/weight/params"] == pytest.approx(0.200520, rel=1e-5)
    assert m["rest/entropy/params"] == pytest.approx(1.0) and m["rest/entropy/format"] == pytest.approx(0.05)
    assert m["rest/weight/cot"] == 0.0 and m["rest/share/params"] == pytest.approx(2 / 3)
    # a baseline given the entropy (old log-prob not fused) still reports it per region, with weight 1
    w, m = compute_token_weights(regions, mask, ent, 0.5, 0, AlgorithmConfig())
    assert w is None and m["rest/weight/params"] == 1.0 and m["rest/entropy/params"] == pytest.approx(1.0)
    assert needs_old_entropy("variance_bound") and not needs_old_entropy("none")


def test_policy_loss_weighted_and_denominator():
    cfg = AlgorithmConfig(loss_agg_mode="weighted-token-mean", region_weights=RegionWeightConfig(mode="static"))
    logp = torch.zeros(1, 3)
    adv = torch.tensor([[1.0, 1.0, 1.0]])
    w = torch.tensor([[2.0, 1.0, 0.0]])
    mask = torch.ones(1, 3)
    loss, metrics = policy_loss(logp, logp, adv, mask, w, cfg)
    # r = 1 -> l = -A = -1 per token ; (2*-1 + 1*-1) / 3
    assert loss.item() == pytest.approx(-1.0)
    assert metrics["actor/pg_clipfrac"] == 0.0 and metrics["actor/ppo_kl"] == 0.0
    assert loss_denominator(mask, w, cfg).item() == pytest.approx(3.0)
    loss, _ = policy_loss(logp, logp, adv, mask, w, cfg, denominator=torch.tensor(6.0))
    assert loss.item() == pytest.approx(-0.5)


def test_policy_loss_kl_needs_reference():
    cfg = AlgorithmConfig(kl_coef=0.5)
    logp = torch.zeros(1, 2)
    with pytest.raises(ValueError):
        policy_loss(logp, logp, torch.zeros(1, 2), torch.ones(1, 2), None, cfg)
    loss, m = policy_loss(logp, logp, torch.zeros(1, 2), torch.ones(1, 2), None, cfg, ref_logprob=logp)
    assert loss.item() == 0.0 and m["actor/kl_loss"] == 0.0


def test_drgrpo_norm_len_from_config():
    cfg = AlgorithmConfig(loss_agg_mode="seq-mean-token-sum-norm", loss_norm_len=4)
    logp = torch.zeros(2, 2)
    loss, _ = policy_loss(logp, logp, torch.tensor([[1.0, 1.0], [2.0, 0.0]]), torch.tensor([[1, 1], [1, 0]]), None, cfg)
    assert loss.item() == pytest.approx(((-2 / 4) + (-2 / 4)) / 2)


def test_dynamic_sampling_filter():
    keep = dynamic_sampling_keep(torch.tensor([1.0, 1.0, 0.0, 1.0, 2.0, 2.0, 2.0]), torch.tensor([0, 0, 0, 1, 1, 2, 2]))
    assert keep.tolist() == [True, True, True, True, True, False, False]


def test_overlong_shaping_hand_computed():
    lengths = torch.tensor([10, 15, 16, 20, 21])
    # L_max = 20, L_cache = 5: 0 up to 15, then (15 - |y|)/5, -1 beyond 20
    assert raw_overlong(lengths, 20, 5).tolist() == pytest.approx([0.0, 0.0, -0.2, -1.0, -1.0])
    cfg = AlgorithmConfig()
    assert overlong_penalty(lengths, 20, cfg).tolist() == [0.0] * 5
    cfg.overlong.enable, cfg.overlong.buffer_len, cfg.overlong.penalty_factor = True, 5, 0.5
    assert overlong_penalty(lengths, 20, cfg).tolist() == pytest.approx([0.0, 0.0, -0.1, -0.5, -0.5])


def test_config_is_an_omegaconf_structured_config_and_validates():
    conf = OmegaConf.structured(AlgorithmConfig)
    cfg = OmegaConf.to_object(conf)
    assert dataclasses.is_dataclass(cfg)
    cfg.validate()
    bad = AlgorithmConfig(clip_low=1.5)
    with pytest.raises(ValueError, match="algorithm.clip_low"):
        bad.validate()
    bad = AlgorithmConfig(region_weights=RegionWeightConfig(mode="dynamic"))
    modes = "region_weights.mode must be one of entropy|none|static|variance_bound"
    with pytest.raises(ValueError, match=re.escape(modes)):
        bad.validate()
    weighted = RegionWeightConfig(mode="variance_bound")
    AlgorithmConfig(loss_agg_mode="weighted-token-mean", region_weights=weighted).validate()
    with pytest.raises(ValueError, match="weighted-token-mean needs a region_weights.mode other than none"):
        AlgorithmConfig(loss_agg_mode="weighted-token-mean").validate()
    bad = AlgorithmConfig()
    bad.region_weights.curriculum.cot = [[0.5, 1.0], [0.2, 1.0]]
    with pytest.raises(ValueError, match="curriculum.cot"):
        bad.validate()
    bad = AlgorithmConfig()
    bad.reward.name = "nope"
    with pytest.raises(ValueError, match="algorithm.reward.name"):
        bad.validate()
