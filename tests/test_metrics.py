"""VEEGAN mode counting."""

import numpy as np
import pytest

from alllib import data, metrics


def test_real_data_covers_every_mode_with_high_quality():
    for name in ("ring", "grid"):
        x, _ = data.load(name, n=2500)
        centres, std = data.mixture_modes(name)
        result = metrics.mode_coverage(x, centres, std)
        assert result["modes"] == len(centres)
        assert result["high_quality"] > 0.98  # 3 std in 2-D keeps ~98.9%


def test_collapse_and_smear_are_told_apart():
    centres, std = data.mixture_modes("ring")
    collapsed = centres[[0]] + 0.01 * np.random.default_rng(0).standard_normal((500, 2))
    result = metrics.mode_coverage(collapsed, centres, std)
    assert result["modes"] == 1 and result["high_quality"] == 1.0
    smear = np.random.default_rng(0).uniform(-3, 3, (20_000, 2))
    result = metrics.mode_coverage(smear, centres, std)
    assert result["modes"] == 8 and result["high_quality"] < 0.05


def test_shape_is_checked():
    centres, std = data.mixture_modes("grid")
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        metrics.mode_coverage(np.zeros((5, 3)), centres, std)


def test_class_coverage_counts_classes_and_balance():
    probs = np.zeros((20, 4))
    probs[:10, 0] = 1.0             # 10 confident samples of class 0
    probs[10:15, 1] = 0.95          # 5 confident samples of class 1
    probs[10:15, 3] = 0.05
    probs[15:, 2], probs[15:, 0] = 0.6, 0.4  # 5 unsure samples of class 2
    result = metrics.class_coverage(probs)
    np.testing.assert_array_equal(result["counts"], [10, 5, 5, 0])
    assert result["classes"] == 3
    # shares (0.5, 0.25, 0.25, 0) against 1/4 each: 0.5 log 2 + 0.25 log 1 + 0.25 log 1
    assert result["kl_from_uniform"] == pytest.approx(0.5 * np.log(2))
    assert result["confident"] == pytest.approx(15 / 20)
    # one sample of class 1 among 100: below a tenth of its fair share (2.5), so not covered
    rare = np.eye(4)[[0] * 70 + [1] + [2] * 29]
    assert metrics.class_coverage(rare)["classes"] == 2
    one_class = metrics.class_coverage(np.eye(4)[[3] * 8])
    assert one_class["classes"] == 1 and one_class["kl_from_uniform"] == pytest.approx(np.log(4))
    with pytest.raises(ValueError, match="num_classes"):
        metrics.class_coverage(np.zeros(5))
    with pytest.raises(ValueError, match="min_share"):
        metrics.class_coverage(rare, min_share=0)
