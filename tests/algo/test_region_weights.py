import pytest
import torch

from rest.algo.config import REGION_NAMES, CurriculumConfig, RegionWeightConfig
from rest.algo.region_weights import (
    COT,
    FORMAT,
    NAME,
    OTHER,
    PARAMS,
    WEIGHT_FORMS,
    compute_region_weights,
    curriculum_factors,
    interpolate_knots,
    needs_old_entropy,
)
from rest.tooluse.regions import Region

ROW = torch.tensor([[FORMAT, NAME, PARAMS, COT, OTHER]])
FULL = torch.ones(1, 5, dtype=torch.long)


def test_region_ids_match_tooluse_enum():
    assert [Region[n.upper()].value for n in REGION_NAMES] == [0, 1, 2, 3, 4]
    assert (OTHER, FORMAT, NAME, PARAMS, COT) == tuple(Region)


@pytest.mark.parametrize(
    "step, params, cot",
    [(0, 0.6, 0.6), (100, 0.8, 0.8), (250, 1.1, 1.0), (400, 1.2, 1.0)],  # min(0.6+0.002s, 1.2), min(.., 1.0)
)
def test_static_weights_at_steps(step, params, cot):
    cfg = RegionWeightConfig(mode="static")
    w = compute_region_weights(ROW, FULL, None, 0.0, step, cfg)
    raw = [1.0, 1.2, params, cot]  # format, name, params, cot; other = 0
    mean = sum(raw) / 4  # mean over positive-weight valid tokens
    assert w[0].tolist() == pytest.approx([r / mean for r in raw] + [0.0], abs=1e-6)


def test_static_weights_per_sequence_and_padding():
    regions = torch.tensor([[FORMAT, NAME, OTHER, OTHER], [COT, COT, FORMAT, FORMAT]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0]])
    w = compute_region_weights(regions, mask, None, 0.0, 0, RegionWeightConfig(mode="static"))
    # row 0: raw [1, 1.2] mean 1.1 ; row 1: raw [0.6, 0.6, 1] mean 2.2/3 ; padded position -> 0
    assert w[0].tolist() == pytest.approx([1 / 1.1, 1.2 / 1.1, 0.0, 0.0], abs=1e-6)
    assert w[1].tolist() == pytest.approx([0.6 / (2.2 / 3), 0.6 / (2.2 / 3), 1 / (2.2 / 3), 0.0], abs=1e-6)


def _flat_curriculum() -> CurriculumConfig:
    one = [[0.0, 1.0], [1.0, 1.0]]
    return CurriculumConfig(format=one, name=one, params=one, cot=one, other=one)


def test_entropy_weights_inverse_to_region_mean_entropy():
    regions = torch.tensor([[FORMAT, COT, COT, NAME]])
    entropy = torch.tensor([[0.05, 2.0, 1.0, 0.5]])
    cfg = RegionWeightConfig(mode="entropy", curriculum=_flat_curriculum())
    w = compute_region_weights(regions, torch.ones(1, 4), entropy, 0.5, 0, cfg)
    # Hbar: format 0.05, cot 1.5, name 0.5 -> raw 20, 2/3, 2/3, 2 ; mean 23.333/4 -> mean-1 weights
    raw = [20.0, 2 / 3, 2 / 3, 2.0]
    mean = sum(raw) / 4
    assert w[0].tolist() == pytest.approx([r / mean for r in raw], rel=1e-5)
    assert w.mean().item() == pytest.approx(1.0)


def test_entropy_weights_floor_clamp_and_curriculum():
    regions = torch.tensor([[FORMAT, COT]])
    entropy = torch.tensor([[0.0, 50.0]])
    one = [[0.0, 1.0]]
    cur = CurriculumConfig(format=[[0.0, 2.0], [1.0, 0.0]], name=one, params=one, cot=one, other=one)
    cfg = RegionWeightConfig(mode="entropy", curriculum=cur, entropy_floor=0.01, min_weight=0.001, max_weight=8.0)
    w = compute_region_weights(regions, torch.ones(1, 2), entropy, 0.5, 0, cfg)
    # c_format(0.5) = 1 ; raw = 1/0.01 = 100, 1/50 = 0.02 ; batch mean 50.01 -> 1.9996, 0.0004 -> clamp 0.001
    a, b = 100 / 50.01, 0.001
    assert w[0].tolist() == pytest.approx([2 * a / (a + b), 2 * b / (a + b)], rel=1e-5)


def test_variance_bound_weights_inverse_to_mean_bound():
    # same batch as the entropy test: beta_r = mean over r's tokens of 1 - exp(-H_t)
    regions = torch.tensor([[FORMAT, COT, COT, NAME]])
    entropy = torch.tensor([[0.05, 2.0, 1.0, 0.5]])
    cfg = RegionWeightConfig(mode="variance_bound", curriculum=_flat_curriculum())
    w = compute_region_weights(regions, torch.ones(1, 4), entropy, 0.5, 0, cfg)
    # beta: format 1 - e^-0.05 = 0.0487706, cot (0.8646647 + 0.6321206) / 2 = 0.7483926, name 1 - e^-0.5 = 0.3934693
    # raw 1/beta = 20.504166, 1.336197, 1.336197, 2.541494 ; mean 6.429514 (one row: batch mean = row mean)
    assert w[0].tolist() == pytest.approx([3.1890696, 0.2078224, 0.2078224, 0.3952856], rel=1e-5)
    # against 1/H: [3.4286, 0.1143, 0.1143, 0.3429]; the bound saturates at high entropy, so CoT loses less
    entropy_w = compute_region_weights(regions, torch.ones(1, 4), entropy, 0.5, 0, RegionWeightConfig(
        mode="entropy", curriculum=_flat_curriculum()))
    assert w[0, 1] > entropy_w[0, 1] and w[0, 0] < entropy_w[0, 0]


def test_variance_bound_floor_curriculum_batch_mean_and_clamp():
    one = [[0.0, 1.0]]
    cur = CurriculumConfig(format=one, name=one, params=[[0.0, 2.0]], cot=one, other=one)
    cfg = RegionWeightConfig(mode="variance_bound", curriculum=cur, entropy_floor=0.01, min_weight=0.001,
                             max_weight=2.0)
    regions = torch.tensor([[FORMAT, PARAMS], [PARAMS, PARAMS]])
    entropy = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    w = compute_region_weights(regions, torch.ones(2, 2), entropy, 0.0, 0, cfg)
    # beta_format = 0 -> floor 1 - e^-0.01 = 0.00995017 ; beta_params = 1 - e^-1 = 0.6321206
    # raw c/beta: format 100.50083, params 2 / 0.6321206 = 3.163953 ; batch token mean (100.50083 + 3 x 3.163953) / 4
    # = 27.498173 -> format 3.654819 (clamped to max 2), params 0.1150605
    # row 0: [2, 0.1150605] / mean 1.0575302 ; row 1: all params -> [1, 1]
    assert w[0].tolist() == pytest.approx([1.8911989, 0.1088011], rel=1e-5)
    assert w[1].tolist() == pytest.approx([1.0, 1.0], rel=1e-6)


def test_weight_forms_registered_and_which_need_the_old_entropy():
    assert WEIGHT_FORMS.names() == ["entropy", "none", "static", "variance_bound"]
    assert {m: needs_old_entropy(m) for m in WEIGHT_FORMS.names()} == {
        "entropy": True, "none": False, "static": False, "variance_bound": True}
    with pytest.raises(KeyError, match="dynamic"):
        needs_old_entropy("dynamic")


@pytest.mark.parametrize("mode", ["entropy", "variance_bound"])
def test_entropy_forms_need_entropy(mode):
    with pytest.raises(ValueError, match=f"region_weights.mode={mode} needs the old policy's per-token entropy"):
        compute_region_weights(ROW, FULL, None, 0.0, 0, RegionWeightConfig(mode=mode))


def test_none_mode_gives_no_weights():
    entropy = torch.full((1, 5), 0.5)
    assert compute_region_weights(ROW, FULL, entropy, 0.0, 0, RegionWeightConfig(mode="none")) is None


def test_curriculum_interpolation_hand_computed():
    knots = [[0.0, 1.5], [0.3, 1.0], [1.0, 1.0]]
    assert interpolate_knots(knots, 0.0) == pytest.approx(1.5)
    assert interpolate_knots(knots, 0.15) == pytest.approx(1.25)
    assert interpolate_knots(knots, 0.5) == pytest.approx(1.0)
    params = [[0.0, 0.6], [0.3, 0.6], [0.7, 1.2], [1.0, 1.2]]
    assert interpolate_knots(params, 0.5) == pytest.approx(0.9)
    assert interpolate_knots([[0.2, 3.0]], 0.9) == 3.0  # constant outside the knots
    f = curriculum_factors(CurriculumConfig(), 0.0)
    assert f.tolist() == pytest.approx([1.0, 1.5, 1.0, 0.6, 0.6])  # other, format, name, params, cot
    f = curriculum_factors(CurriculumConfig(), 1.0)
    assert f.tolist() == pytest.approx([1.0, 1.0, 1.0, 1.2, 1.0])
