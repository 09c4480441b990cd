"""The course's one rule for calling a difference between two training methods real.

A difference is called real only if the 95% t-interval of the paired difference over the same
seeds excludes 0; a 1,000-resample bootstrap over the test set is printed beside it.

The seeds are the repeats that matter: a method whose gain another seed could undo has not
shown a gain. Pairing runs that share a seed (same initialisation, same data order) removes the
spread between seeds that both methods share, and the t quantile, not 1.96, is the honest one
for a handful of seeds. The bootstrap answers a different question, how much a test set of this
size alone could move the number, so it is shown but never decides.

NumPy and SciPy only: results can be judged without loading a deep-learning framework.
"""

import numpy as np
import scipy.stats

RULE = (
    "A difference is called real only if the 95% t-interval of the paired difference over the "
    "same seeds excludes 0; a 1,000-resample bootstrap over the test set is printed beside it."
)
METRICS = ("accuracy", "nll", "ece")
ECE_BINS = 15  # alllib.metrics reads both from here
NLL_FLOOR = float(np.finfo("float32").tiny)  # smallest probability a float32 softmax can report


def _check_confidence(confidence):
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1); received {confidence}.")


def t_interval(values, confidence=0.95):
    """Student-t interval of the mean of `values` (one per seed): `(mean, low, high)`.
    With 5 seeds the 97.5% t quantile is 2.78, not 1.96; the normal one would be too narrow."""
    _check_confidence(confidence)
    values = np.asarray(values, dtype="float64")
    if values.ndim != 1 or len(values) < 2 or not np.isfinite(values).all():
        raise ValueError(
            "`values` must be a 1-D array of at least 2 finite numbers (one per seed); "
            f"received {values.tolist()}."
        )
    mean = values.mean()
    half_width = (scipy.stats.t.ppf((1 + confidence) / 2, len(values) - 1)
                  * values.std(ddof=1) / np.sqrt(len(values)))
    return float(mean), float(mean - half_width), float(mean + half_width)


def paired_difference(a, b, confidence=0.95):
    """The t-interval of `b - a`, where `a[i]` and `b[i]` were trained with the same seed.

    Returns a dict: `mean`, `low`, `high`, `n` (seeds) and `real`, True when the interval
    excludes 0. When every seed gives the same difference the interval collapses to that value,
    so `real` is True exactly when the difference is not 0.
    """
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    if a.ndim != 1 or a.shape != b.shape or len(a) < 2:
        raise ValueError(
            "`a` and `b` must be 1-D with the same length of at least 2, one value per seed in the "
            f"same seed order; received shapes {a.shape} and {b.shape}."
        )
    mean, low, high = t_interval(b - a, confidence)
    return {"mean": mean, "low": low, "high": high, "n": len(a), "real": bool(low > 0 or high < 0)}


def _check_runs(name, probs, labels):
    """`probs` as (seeds, n, num_classes), in its own float precision as alllib.metrics keeps it."""
    probs = np.asarray(probs)
    if not np.issubdtype(probs.dtype, np.floating):
        probs = probs.astype("float64")
    if probs.ndim == 2:
        probs = probs[None]
    if probs.ndim != 3 or probs.shape[1] != len(labels) or not np.isfinite(probs).all():
        raise ValueError(
            f"`{name}` must be finite probabilities of shape (seeds, n, num_classes) or "
            f"(n, num_classes) with n = len(labels) = {len(labels)}; received {probs.shape}."
        )
    return probs


def _resampled_metric(probs, labels, metric, counts):
    """`metric` of every seed's predictions on every resampled test set, averaged over seeds.

    `counts[r, i]` is how often example i appears in resample r. Each metric is a sum of
    per-example terms, so one matrix product with `counts` scores all resamples at once.
    Returns shape (resamples,).
    """
    n = len(labels)
    confidence = probs.max(-1)  # (seeds, n)
    correct = (probs.argmax(-1) == labels).astype("float64")
    if metric == "accuracy":
        return counts @ correct.mean(0) / n
    if metric == "nll":
        true_class = np.take_along_axis(probs, labels[None, :, None], -1)[..., 0].astype("float64")
        return counts @ -np.log(np.clip(true_class, NLL_FLOOR, 1.0)).mean(0) / n
    # ECE as alllib.metrics.calibration_bins: bin (lo, hi], index found in the probs' precision
    scaled = confidence * np.asarray(ECE_BINS, dtype=confidence.dtype)
    bin_index = np.clip(np.ceil(scaled).astype("int64") - 1, 0, ECE_BINS - 1)
    gaps = np.eye(ECE_BINS)[bin_index] * (correct - confidence)[..., None]  # (seeds, n, bins)
    bin_gaps = counts @ gaps.transpose(1, 0, 2).reshape(n, -1)  # (resamples, seeds * bins)
    return np.abs(bin_gaps.reshape(len(counts), len(probs), ECE_BINS)).sum(-1).mean(1) / n


def bootstrap_difference(probs_a, probs_b, labels, metric="accuracy", resamples=1000, seed=0,
                         confidence=0.95):
    """Test-set bootstrap of metric(B) - metric(A), each side's metric averaged over its seeds.

    `probs_a` and `probs_b` are (seeds, n, num_classes), or (n, num_classes) for a single run;
    the two sides may have different numbers of seeds. Every resample draws the same test
    examples for both sides and all seeds, so how hard a resample happens to be cancels in the
    difference. `metric` is "accuracy", "nll" or "ece" (15 bins, as alllib.metrics).

    Returns a dict: `mean`, the difference on the full test set, and `low`, `high`, the
    percentile interval over the resamples.
    """
    _check_confidence(confidence)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"`labels` must be a non-empty array of integer classes; received {labels.dtype} "
            f"of shape {labels.shape}."
        )
    if metric not in METRICS:
        raise ValueError(f"`metric` must be one of {', '.join(METRICS)}; received {metric!r}.")
    if resamples < 100:
        raise ValueError(
            f"`resamples` must be at least 100 for a percentile interval; received {resamples}."
        )
    probs_a = _check_runs("probs_a", probs_a, labels)
    probs_b = _check_runs("probs_b", probs_b, labels)
    num_classes = probs_a.shape[2]
    if probs_b.shape[2] != num_classes:
        raise ValueError(
            "`probs_a` and `probs_b` must have the same number of classes; received shapes "
            f"{probs_a.shape} and {probs_b.shape}."
        )
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"`labels` must lie in [0, {num_classes}); found values from {labels.min()} to "
            f"{labels.max()}."
        )
    n = len(labels)
    resampled = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=resamples)
    counts = np.vstack([np.ones(n), resampled])  # row 0: the test set itself
    differences = (_resampled_metric(probs_b, labels, metric, counts)
                   - _resampled_metric(probs_a, labels, metric, counts))
    tail = (1 - confidence) / 2
    low, high = np.quantile(differences[1:], [tail, 1 - tail])
    return {"mean": float(differences[0]), "low": float(low), "high": float(high)}


def describe(difference, bootstrap=None, digits=3):
    """One line for a results table, e.g. "+0.012 [+0.004, +0.020] real | bootstrap [+0.008,
    +0.016]": the seed interval and its verdict, then the test-set interval beside it."""
    def signed(value):
        return f"{value:+.{digits}f}"

    verdict = "real" if difference["real"] else "noise"
    low, high = signed(difference["low"]), signed(difference["high"])
    line = f"{signed(difference['mean'])} [{low}, {high}] {verdict}"
    if bootstrap is not None:
        line += f" | bootstrap [{signed(bootstrap['low'])}, {signed(bootstrap['high'])}]"
    return line
