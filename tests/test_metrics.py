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
