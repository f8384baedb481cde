"""GF, VP and FHS against values worked out by hand (bc -l), never by calling the code under test."""

import math

import numpy as np
import pytest

from layerprobe.errors import LayerprobeError
from layerprobe.fhs.scores import feature_health_score, growth_factor, module_score, volatility_penalty


def test_rising_curve():
    # P = 50, 60, 80: start 50, min 50, end 80, total variation 10 + 20 = 30
    # GF  = ln(80 / sqrt(50 * 50)) = ln(1.6)           = 0.470003629245735553
    # VP  = exp(-0.2 * 30 / 80)   = exp(-0.075)         = 0.927743486328552892
    # FHS = 80 * 1.470003629245735553 * 0.927743486328552892 = 109.102903352965135
    s = module_score([50, 60, 80])
    assert s.gf == pytest.approx(0.470003629245735553, rel=1e-12)
    assert s.vp == pytest.approx(0.927743486328552892, rel=1e-12)
    assert s.fhs == pytest.approx(109.102903352965135, rel=1e-12)
    assert (s.p_start, s.p_min, s.p_end, s.total_variation) == (50, 50, 80, 30)
    assert s.reason == ""


def test_falling_curve():
    # P = 90, 70, 60: start 90, min 60, end 60, TV 30
    # GF  = ln(60 / sqrt(90 * 60)) = -0.202732554054082191
    # VP  = exp(-0.2 * 30 / 60) = exp(-0.1) = 0.904837418035959573
    # FHS = 60 * 0.797267445945917809 * 0.904837418035959573 = 43.2838450364296994
    p = [90, 70, 60]
    assert growth_factor(p) == pytest.approx(-0.202732554054082191, rel=1e-12)
    assert volatility_penalty(p) == pytest.approx(0.904837418035959573, rel=1e-12)
    assert feature_health_score(p) == pytest.approx(43.2838450364296994, rel=1e-12)


def test_oscillating_curve_is_penalised():
    # P = 60, 80, 60, 80: start 60, min 60, end 80, TV 60
    # GF  = ln(80 / 60) = 0.287682072451780927
    # VP  = exp(-0.2 * 60 / 80) = exp(-0.15) = 0.860707976425057807
    # FHS = 80 * 1.287682072451780927 * 0.860707976425057807 = 88.6654584687037630
    s = module_score([60, 80, 60, 80])
    assert s.gf == pytest.approx(0.287682072451780927, rel=1e-12)
    assert s.vp == pytest.approx(0.860707976425057807, rel=1e-12)
    assert s.fhs == pytest.approx(88.6654584687037630, rel=1e-12)
    # lambda is a parameter: exp(-0.5 * 60 / 80) = 0.687289278790972199 -> FHS 70.8008066309959139
    assert module_score([60, 80, 60, 80], lambda_=0.5).fhs == pytest.approx(70.8008066309959139, rel=1e-12)


def test_flat_curve_scores_its_level():
    s = module_score([70, 70, 70])
    assert (s.gf, s.vp, s.fhs, s.total_variation) == (0.0, 1.0, 70.0, 0.0)


def test_single_layer_module_scores_its_only_value():
    # P_start = P_min = P_end: GF = ln 1 = 0, the variation sum is empty: VP = 1, FHS = P
    s = module_score([75.5])
    assert (s.gf, s.vp, s.fhs, s.n_layers) == (0.0, 1.0, 75.5, 1)


def test_plausible_vision_curve_exceeds_100_like_table_1():
    # rise-and-fluctuate: 40, 55, 70, 82, 85, 83, 86; TV = 15+15+12+3+2+3 = 50
    # GF = ln(86 / 40) = 0.765467842139571430; VP = exp(-0.2 * 50 / 86) = 0.890226753255845171
    # FHS = 86 * 1.765467842139571430 * 0.890226753255845171 = 135.163336637354175
    fhs = feature_health_score([40, 55, 70, 82, 85, 83, 86])
    assert fhs == pytest.approx(135.163336637354175, rel=1e-12)
    assert fhs > 100


def test_collapse_gives_negative_score():
    # P = 80, 10: GF = ln(10 / sqrt(800)) = -1.03972077083991796 < -1; VP = exp(-1.4) = 0.246596963941606477
    # FHS = 10 * (-0.03972077083991796) * 0.246596963941606477 = -0.0979502149454406421
    assert feature_health_score([80, 10]) == pytest.approx(-0.0979502149454406421, rel=1e-10)


def test_zero_performance_is_nan_with_a_reason():
    end_zero = module_score([50, 20, 0])
    assert math.isnan(end_zero.fhs) and math.isnan(end_zero.gf) and "P_end is 0" in end_zero.reason
    min_zero = module_score([0, 50])
    assert math.isnan(min_zero.fhs) and "P_min is 0" in min_zero.reason
    assert (min_zero.p_start, min_zero.p_min, min_zero.p_end) == (0, 0, 50)
    assert math.isnan(feature_health_score([0.0]))


def test_eps_floors_zero_before_scoring():
    # P = 0, 50 with eps = 1 -> 1, 50: GF = ln(50) = 3.91202300542814606; TV = 49
    # VP = exp(-0.2 * 49 / 50) = 0.822012236678186562; FHS = 50 * 4.91202300542814606 * 0.822012236678186562 = 201.887150374132623
    s = module_score([0, 50], eps=1.0)
    assert s.gf == pytest.approx(3.91202300542814606, rel=1e-12)
    assert s.fhs == pytest.approx(201.887150374132623, rel=1e-12)
    assert s.reason == ""


def test_interior_missing_layer_is_bridged():
    # 50, nan, 40, 80 -> 50, 40, 80: start 50, min 40, end 80, TV 10 + 40 = 50
    # GF = ln(80 / sqrt(2000)) = 0.581575404902840432; VP = exp(-0.125) = 0.882496902584595403
    # FHS = 80 * 1.581575404902840432 * 0.882496902584595403 = 111.658831682458720
    s = module_score([50, math.nan, 40, 80])
    assert s.fhs == pytest.approx(111.658831682458720, rel=1e-12)
    assert (s.n_layers, s.n_missing, s.reason) == (4, 1, "")
    # Linear interpolation of the gap (45) gives the same numbers: no new minimum, same variation.
    assert module_score([50, 45, 40, 80]).fhs == pytest.approx(s.fhs, rel=1e-12)
    assert module_score([50, None, 40, 80]).fhs == pytest.approx(s.fhs, rel=1e-12)


def test_missing_end_layer_is_nan_and_policies():
    first = module_score([math.nan, 60, 80])
    last = module_score([60, 80, math.nan], layer_ids=[5, 6, 7])
    assert math.isnan(first.fhs) and "first layer missing" in first.reason
    assert math.isnan(last.fhs) and "last layer missing" in last.reason
    strict = module_score([50, math.nan, 40, 80], missing="nan", layer_ids=[0, 3, 6, 9])
    assert math.isnan(strict.fhs) and "missing layer(s): 3" in strict.reason
    with pytest.raises(LayerprobeError, match="1 missing layer"):
        module_score([50, math.nan, 80], missing="error")


@pytest.mark.parametrize(
    ("curve", "kwargs", "match"),
    [
        ([], {}, "non-empty"),
        ([[50, 60]], {}, "1-D"),
        ([0.5, 120], {}, "outside \\[0, 100\\]"),
        ([50, -1], {}, "outside"),
        ([50, math.inf], {}, "outside"),
        (["a", 2], {}, "sequence of numbers"),
        ([50], {"lambda_": -0.1}, "lambda_"),
        ([50], {"eps": -1}, "eps"),
        ([50], {"missing": "drop"}, "not a policy"),
    ],
)
def test_bad_input_raises_one_line_error(curve, kwargs, match):
    with pytest.raises(LayerprobeError, match=match) as err:
        module_score(curve, **kwargs)
    assert "\n" not in str(err.value)


def test_numpy_input_and_purity():
    p = np.array([50.0, 60.0, 80.0])
    assert feature_health_score(p) == pytest.approx(109.102903352965135, rel=1e-12)
    assert p.tolist() == [50.0, 60.0, 80.0]
