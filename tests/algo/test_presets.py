from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rest.algo.config import AlgorithmConfig

CONF = Path(__file__).resolve().parents[2] / "conf" / "algorithm"


def load(name: str) -> AlgorithmConfig:
    text = (CONF / f"{name}.yaml").read_text()
    assert text.startswith("# @package algorithm")
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AlgorithmConfig), OmegaConf.create(text)))
    cfg.validate()
    return cfg


@pytest.mark.parametrize("name", ["rest", "rest_static", "grpo", "drgrpo", "dapo"])
def test_preset_loads_and_validates(name):
    assert load(name).name == name


def test_preset_semantics():
    rest, static, grpo, drgrpo, dapo = (load(n) for n in ["rest", "rest_static", "grpo", "drgrpo", "dapo"])
    assert (rest.region_weights.mode, rest.loss_agg_mode, rest.kl_coef, rest.dual_clip_c) == (
        "entropy", "weighted-token-mean", 0.0, 3.0)
    assert (static.region_weights.mode, static.loss_agg_mode) == ("static", "weighted-token-mean")
    assert (grpo.loss_agg_mode, grpo.norm_adv_by_std, grpo.region_weights.mode) == ("seq-mean-token-mean", True, "none")
    assert (drgrpo.loss_agg_mode, drgrpo.norm_adv_by_std, drgrpo.loss_norm_len) == ("seq-mean-token-sum-norm", False, None)
    assert (dapo.clip_low, dapo.clip_high, dapo.loss_agg_mode) == (0.2, 0.28, "token-mean")
    assert dapo.dynamic_sampling.enable and dapo.overlong.enable
    assert not any(c.dynamic_sampling.enable or c.overlong.enable for c in (rest, static, grpo, drgrpo))
