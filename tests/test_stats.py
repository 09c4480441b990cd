"""The rule for calling a difference real: seed t-intervals, the test-set bootstrap, the verdict."""

import subprocess
import sys

import numpy as np
import pytest
import scipy.stats

from alllib import stats


def test_the_rule_is_stated_in_the_docstring_and_needs_no_keras():
    assert stats.RULE in " ".join(stats.__doc__.split())
    code = "import sys, alllib.stats; assert 'keras' not in sys.modules, 'keras imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_t_interval_matches_scipy():
    values = np.array([1.0, 2.0, 3.0, 4.0, 6.0])
    # by hand: mean 3.2, sample variance 14.8 / 4 = 3.7, t(0.975, 4 dof) = 2.776
    half_width = scipy.stats.t.ppf(0.975, 4) * np.sqrt(3.7 / 5)
    assert stats.t_interval(values) == pytest.approx((3.2, 3.2 - half_width, 3.2 + half_width))
    expected = scipy.stats.t.interval(0.99, 4, loc=3.2, scale=scipy.stats.sem(values))
    assert stats.t_interval(values, confidence=0.99)[1:] == pytest.approx(expected)


def test_t_interval_covers_the_true_mean_95_percent_of_the_time():
    draws = np.random.default_rng(0).normal(loc=1.0, size=(2000, 5))
    intervals = np.array([stats.t_interval(values)[1:] for values in draws])
    covered = ((intervals[:, 0] <= 1.0) & (1.0 <= intervals[:, 1])).mean()
    assert 0.93 <= covered <= 0.97
    # the normal quantile in its place would fall well short with 5 values
    z_half = 1.96 * draws.std(1, ddof=1) / np.sqrt(5)
    assert (np.abs(draws.mean(1) - 1.0) <= z_half).mean() < 0.9


@pytest.mark.parametrize("values", [[1.0], [], [1.0, np.nan, 2.0], [[1.0, 2.0], [3.0, 4.0]]])
def test_t_interval_needs_two_finite_values(values):
    with pytest.raises(ValueError, match=r"`values` must be a 1-D array of at least 2 finite"):
        stats.t_interval(values)


def test_pairing_removes_the_spread_between_seeds():
    a = np.array([0.70, 0.80, 0.90, 0.75, 0.85])  # seeds differ far more than the methods do
    b = a + 0.01 + np.array([0.002, -0.001, 0.0, 0.001, -0.002])
    paired = stats.paired_difference(a, b)
    assert paired["real"] and paired["n"] == 5
    assert paired["mean"] == pytest.approx(0.01) and paired["low"] > 0
    # the same numbers with the seed pairing broken: the seeds' spread swamps the shift
    unpaired = stats.paired_difference(a, b[[3, 4, 0, 1, 2]])
    assert not unpaired["real"] and unpaired["low"] < 0 < unpaired["high"]
    assert unpaired["high"] - unpaired["low"] > 20 * (paired["high"] - paired["low"])


def test_identical_differences_collapse_the_interval():
    shifted = stats.paired_difference([0.0, 1.0, 2.0], [0.5, 1.5, 2.5])
    assert shifted["low"] == shifted["mean"] == shifted["high"] == 0.5 and shifted["real"]
    assert stats.paired_difference([0.5, 1.5, 2.5], [0.0, 1.0, 2.0])["real"]
    same = stats.paired_difference([0.0, 1.0, 2.0], [0.0, 1.0, 2.0])
    assert same["low"] == same["high"] == 0.0 and not same["real"]


def test_paired_difference_needs_matching_seeds():
    with pytest.raises(ValueError, match=r"`a` and `b` must be 1-D with the same length"):
        stats.paired_difference([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"`a` and `b`.*at least 2"):
        stats.paired_difference([0.1], [0.2])


def random_probs(shape, seed, dtype="float64"):
    """Softmax of spread-out logits: every probability stays well above 1e-7."""
    logits = 2 * np.random.default_rng(seed).standard_normal(shape)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return probs.astype(dtype)


def test_identical_sides_differ_by_exactly_zero():
    probs, labels = random_probs((3, 300, 5), seed=0), np.random.default_rng(1).integers(5, size=300)
    for metric in stats.METRICS:
        result = stats.bootstrap_difference(probs, probs, labels, metric=metric)
        assert result == {"mean": 0.0, "low": 0.0, "high": 0.0}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_point_estimates_match_alllib_metrics(dtype):
    from alllib import metrics  # imports keras
    n, k = 400, 4
    labels = np.random.default_rng(2).integers(k, size=n)
    probs_a = random_probs((3, n, k), seed=3, dtype=dtype)
    probs_b = random_probs((2, n, k), seed=4, dtype=dtype)
    # 20 wrong at confidence 0.4, a bin edge (float32 0.4 * 15 rounds to 6: bin 5, not 6),
    # and 20 right at 0.43 in the next bin up: binning them together would shrink the ECE
    labels[:40] = 1
    probs_a[0, :20] = np.array([0.4, 0.2, 0.2, 0.2], dtype)
    probs_a[0, 20:40] = np.array([0.2, 0.43, 0.17, 0.2], dtype)
    assert min(probs_a.min(), probs_b.min()) > 1e-7  # so metrics.nll's clip never applies
    functions = {"accuracy": metrics.accuracy, "nll": metrics.nll,
                 "ece": metrics.expected_calibration_error}
    for metric, function in functions.items():
        expected = (np.mean([function(p, labels) for p in probs_b])
                    - np.mean([function(p, labels) for p in probs_a]))
        result = stats.bootstrap_difference(probs_a, probs_b, labels, metric=metric)
        assert result["mean"] == pytest.approx(expected, rel=1e-9, abs=1e-12), metric
        assert result["low"] < result["high"], metric
    single_run = stats.bootstrap_difference(probs_a[0], probs_b[0], labels, metric="ece")
    expected = (metrics.expected_calibration_error(probs_b[0], labels)
                - metrics.expected_calibration_error(probs_a[0], labels))
    assert single_run["mean"] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def simulated_pair(n, accuracy_a, accuracy_b, seed, k=10):
    """Probabilities for two methods that share which test examples are hard: B gets right every
    example A gets right and a further `accuracy_b - accuracy_a` of them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(k, size=n)
    wrong = (labels + rng.integers(1, k, size=n)) % k
    difficulty = rng.uniform(size=n)
    probs = []
    for accuracy in (accuracy_a, accuracy_b):
        predicted = np.where(difficulty < accuracy, labels, wrong)
        probs.append(np.full((n, k), 0.02) + 0.8 * np.eye(k)[predicted])
    return probs[0], probs[1], labels


def test_bootstrap_interval_contains_a_known_true_difference():
    # B is truly better by 0.05; over 200 simulated test sets the 95% interval should hold it
    # about 95% of the time (binomial standard error 0.015)
    covered = []
    for seed in range(200):
        probs_a, probs_b, labels = simulated_pair(400, 0.70, 0.75, seed=seed)
        result = stats.bootstrap_difference(probs_a, probs_b, labels, resamples=100, seed=seed)
        covered.append(result["low"] <= 0.05 <= result["high"])
    assert 0.9 <= np.mean(covered) <= 0.99
    probs_a, probs_b, labels = simulated_pair(4000, 0.70, 0.75, seed=0)
    result = stats.bootstrap_difference(probs_a, probs_b, labels)
    assert 0 < result["low"] and result["high"] - result["low"] < 0.03


def test_both_sides_see_the_same_resampled_examples():
    # B is never worse on any example, so no resample of shared examples can favour A;
    # independent resamples for each side would push the interval below 0
    probs_a, probs_b, labels = simulated_pair(1000, 0.70, 0.71, seed=6)
    result = stats.bootstrap_difference(probs_a, probs_b, labels)
    assert result["low"] >= 0 and result["mean"] == pytest.approx(np.mean(
        probs_b.argmax(1) == labels) - np.mean(probs_a.argmax(1) == labels))
    again = stats.bootstrap_difference(probs_a, probs_b, labels)
    other_seed = stats.bootstrap_difference(probs_a, probs_b, labels, seed=1)
    assert again == result and other_seed != result


def test_bootstrap_checks_its_inputs():
    probs, labels = random_probs((2, 50, 3), seed=7), np.zeros(50, dtype="int64")
    cases = [
        ((probs[:, :40], probs, labels), {}, r"`probs_a` must be .* n = len\(labels\) = 50"),
        ((probs, probs[0, :, :2], labels), {}, r"`probs_a` and `probs_b` .* number of classes"),
        ((probs, probs, labels + 3), {}, r"`labels` must lie in \[0, 3\)"),
        ((probs, probs, labels.astype("float32")), {}, r"`labels` must be .* integer"),
        ((probs, probs, labels), {"metric": "auc"}, r"`metric` must be one of accuracy, nll, ece"),
        ((probs, probs, labels), {"resamples": 10}, r"`resamples` must be at least 100"),
        ((probs, probs, labels), {"confidence": 95}, r"`confidence` must be in \(0, 1\)"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            stats.bootstrap_difference(*args, **kwargs)


def test_describe_prints_signed_intervals_and_the_verdict():
    real = {"mean": 0.012, "low": 0.004, "high": 0.020, "n": 5, "real": True}
    assert (stats.describe(real, {"mean": 0.012, "low": 0.008, "high": 0.016})
            == "+0.012 [+0.004, +0.020] real | bootstrap [+0.008, +0.016]")
    noise = {"mean": -0.003, "low": -0.010, "high": 0.004, "n": 5, "real": False}
    assert stats.describe(noise) == "-0.003 [-0.010, +0.004] noise"
    assert stats.describe(noise, digits=1) == "-0.0 [-0.0, +0.0] noise"
