"""VEEGAN mode counting, class coverage, and the distances between feature sets."""

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


class DigitReader:
    """A stand-in judge that reads the digit d from an image filled with d / 10."""

    def probs(self, x):
        return np.eye(10)[np.rint(x.mean(axis=(1, 2, 3)) * 10).astype(int)]


def test_stacked_modes_count_three_digit_modes_and_their_balance():
    every_mode = np.stack([np.full((8, 8), d / 10) for d in range(10)])
    triples = np.array([[a, b, c] for a in range(10) for b in range(10) for c in range(10)])
    images = np.stack([every_mode[triples[:, c]] for c in range(3)], axis=-1)
    result = metrics.stacked_modes(DigitReader(), images)
    assert result["modes"] == 1000 and result["kl_from_uniform"] == pytest.approx(0.0, abs=1e-9)
    one = metrics.stacked_modes(DigitReader(), np.repeat(images[123:124], 50, axis=0))
    assert one["modes"] == 1 and one["counts"][123] == 50
    assert one["kl_from_uniform"] == pytest.approx(np.log(1000))
    with pytest.raises(ValueError, match="non-empty batch"):
        metrics.stacked_modes(DigitReader(), images[0])


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


def gaussian(n, d, seed, mean=0.0, std=1.0):
    return mean + std * np.random.default_rng(seed).standard_normal((n, d))


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    real = gaussian(20_000, 8, seed=0)
    assert abs(metrics.frechet_distance(real, real)) < 1e-8
    # N(mu, s^2 I) against N(0, I): ||mu||^2 + d (s - 1)^2
    fake = gaussian(20_000, 8, seed=1, mean=0.5, std=2.0)
    assert metrics.frechet_distance(real, fake) == pytest.approx(8 * 0.25 + 8 * 1.0, rel=0.03)
    noisy = [metrics.frechet_distance(real, real + gaussian(20_000, 8, 2, std=s)) for s in (0.1, 0.3, 1.0)]
    assert noisy[0] < noisy[1] < noisy[2]


def test_kernel_distance_is_unbiased_near_zero_and_grows_with_a_shift():
    real, same = gaussian(2000, 16, seed=0), gaussian(2000, 16, seed=1)
    mean, spread = metrics.kernel_distance(real, same, subset_size=500, subsets=20)
    assert abs(mean) < 3 * spread + 1e-3
    shifted = [metrics.kernel_distance(real, same + s, subset_size=500, subsets=20)[0] for s in (0.2, 0.5)]
    assert 3 * spread < shifted[0] < shifted[1]


def brute_force_prdc(real, fake, k):
    """The definitions written out point by point, to check the vectorised version."""
    from scipy.spatial.distance import cdist

    def radii(x):
        return np.sort(cdist(x, x), axis=1)[:, k]

    r_real, r_fake, d = radii(real), radii(fake), cdist(real, fake)
    return {
        "precision": np.mean([any(d[i, j] <= r_real[i] for i in range(len(real))) for j in range(len(fake))]),
        "recall": np.mean([any(d[i, j] <= r_fake[j] for j in range(len(fake))) for i in range(len(real))]),
        "density": sum((d[i, j] <= r_real[i]) for i in range(len(real)) for j in range(len(fake))) / (k * len(fake)),
        "coverage": np.mean([d[i].min() <= r_real[i] for i in range(len(real))]),
    }


def test_prdc_agrees_with_the_definitions_and_sees_collapse():
    real, fake = gaussian(150, 3, seed=0), gaussian(120, 3, seed=1, mean=0.3)
    got = metrics.precision_recall_density_coverage(real, fake, k=5)
    want = brute_force_prdc(real, fake, k=5)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key
    # a generator that reproduces a few real points: precise but neither diverse nor covering
    collapsed = real[np.arange(300) % 3] + 0.01 * gaussian(300, 3, seed=2)
    result = metrics.precision_recall_density_coverage(real, collapsed, k=5)
    assert result["precision"] == 1.0 and result["recall"] < 0.1 and result["coverage"] < 0.2
    with pytest.raises(ValueError, match="`k`"):
        metrics.precision_recall_density_coverage(real, fake[:5], k=5)
    with pytest.raises(ValueError, match="same feature size"):
        metrics.frechet_distance(real, fake[:, :2])
    with pytest.raises(ValueError, match="`fake` must be finite"):
        metrics.kernel_distance(real, np.full((10, 3), np.nan))


def test_prdc_published_sanity_case():
    """Naeem et al.'s check: two independent N(0, I) samples of 10,000 in 1,000-D, k = 5, give
    precision ~0.48, recall ~0.47, density ~1.06, coverage ~0.97 (prdc's README). One draw moves
    these by a few hundredths (density by up to ~0.15: seeds 0-3 here gave 0.91-1.07), so the
    mean over two draws is held to bands around the published values."""
    results = [
        metrics.precision_recall_density_coverage(gaussian(10_000, 1000, 2 * s), gaussian(10_000, 1000, 2 * s + 1))
        for s in range(2)
    ]
    mean = {key: np.mean([r[key] for r in results]) for key in results[0]}
    print(mean)
    assert 0.44 < mean["precision"] < 0.52 and 0.44 < mean["recall"] < 0.51
    assert 0.85 < mean["density"] < 1.2 and 0.95 < mean["coverage"] < 0.99
