"""Measurements used across the course: mode coverage for generators, accuracy, likelihood and
calibration for classifiers. NumPy functions for analysis, plus `CalibrationError`, the same ECE as
a Keras metric that `evaluate` accumulates over a whole dataset."""

import keras
import numpy as np
from keras import ops
from scipy.optimize import linear_sum_assignment

ECE_BINS = 15


def mode_coverage(samples, centres, std):
    """VEEGAN's mode counting for a 2-D Gaussian mixture.

    A sample is high quality when it lies within 3 standard deviations of its nearest mode; a mode
    is captured when it is the nearest mode of at least one high-quality sample. Report both
    numbers: a generator that smears samples everywhere captures every mode with few good samples.

    Returns a dict: `modes` (captured count), `high_quality` (fraction of samples) and
    `per_mode` (high-quality samples per mode).
    """
    samples = np.asarray(samples, dtype="float64")
    if samples.ndim != 2 or samples.shape[1] != np.shape(centres)[1]:
        raise ValueError(
            f"`samples` must have shape (n, {np.shape(centres)[1]}); received {samples.shape}."
        )
    distances = np.linalg.norm(samples[:, None, :] - np.asarray(centres)[None], axis=-1)
    nearest = distances.argmin(axis=1)
    good = distances.min(axis=1) <= 3 * std
    per_mode = np.bincount(nearest[good], minlength=len(centres))
    return {
        "modes": int((per_mode > 0).sum()),
        "high_quality": float(good.mean()) if len(good) else 0.0,
        "per_mode": per_mode,
    }


def class_coverage(probs, min_share=0.1):
    """Which classes a generator produces, judged by a classifier trained on real data.

    `probs` are the classifier's probabilities on generated samples, `(n, num_classes)`. A class
    is covered when it receives at least `min_share` of its fair share, `min_share * n / K`.
    Returns a dict: `classes` (covered count), `counts` (the histogram of predicted classes),
    `kl_from_uniform` (of that histogram, in nats: 0 when perfectly balanced, log K when every
    sample falls in one class) and `confident` (fraction of samples with top probability
    above 0.9: a sample the classifier cannot place is a poor digit, whatever its class).
    """
    probs = np.asarray(probs, dtype="float64")
    if probs.ndim != 2 or len(probs) == 0:
        raise ValueError(f"`probs` must have shape (n, num_classes) with n > 0; received {probs.shape}.")
    if not 0 < min_share <= 1:
        raise ValueError(f"`min_share` must be in (0, 1]; received {min_share}.")
    n, k = probs.shape
    counts = np.bincount(probs.argmax(1), minlength=k)
    shares = counts / n
    nonzero = shares > 0
    return {
        "classes": int((counts >= min_share * n / k).sum()),
        "counts": counts,
        "kl_from_uniform": float(np.sum(shares[nonzero] * np.log(shares[nonzero] * k))),
        "confident": float((probs.max(1) > 0.9).mean()),
    }


def _check_probs(probs, labels):
    probs = np.asarray(probs)
    if not np.issubdtype(probs.dtype, np.floating):
        probs = probs.astype("float64")
    labels = np.asarray(labels).reshape(-1)
    if probs.ndim != 2 or len(probs) != len(labels) or len(labels) == 0:
        raise ValueError(
            f"`probs` must have shape (n, num_classes) with n = len(labels) = {len(labels)} > 0; "
            f"received {probs.shape}."
        )
    if labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(
            f"`labels` must lie in [0, {probs.shape[1]}); found values from {labels.min()} to "
            f"{labels.max()}."
        )
    return probs, labels.astype("int64")


def accuracy(probs, labels):
    probs, labels = _check_probs(probs, labels)
    return float((probs.argmax(1) == labels).mean())


def nll(probs, labels, eps=1e-7):
    """Mean negative log-likelihood of the true class (probabilities clipped at `eps`)."""
    probs, labels = _check_probs(probs, labels)
    true_class = probs[np.arange(len(labels)), labels].astype("float64")
    return float(-np.log(np.clip(true_class, eps, 1.0)).mean())


def calibration_bins(probs, labels, bins=ECE_BINS):
    """Per confidence bin (lo, hi] of equal width: example count, summed confidence and
    summed correctness. Sums, not means, so batches can be added up. The bin index is computed
    in the probabilities' own precision, as `CalibrationError` does, so an edge case such as a
    float32 confidence of 0.8 lands in the same bin in both."""
    probs, labels = _check_probs(probs, labels)
    confidence = probs.max(1)
    correct = (probs.argmax(1) == labels).astype("float64")
    scaled = confidence * np.asarray(bins, dtype=confidence.dtype)
    index = np.clip(np.ceil(scaled).astype("int64") - 1, 0, bins - 1)
    return (
        np.bincount(index, minlength=bins).astype("float64"),
        np.bincount(index, confidence.astype("float64"), minlength=bins),
        np.bincount(index, correct, minlength=bins),
    )


def expected_calibration_error(probs, labels, bins=ECE_BINS):
    """ECE: the count-weighted mean gap between confidence and accuracy over the bins."""
    count, confidence, correct = calibration_bins(probs, labels, bins)
    return float(np.abs(correct - confidence).sum() / max(count.sum(), 1.0))


def matched_accuracy(predicted, labels, num_classes):
    """Accuracy after relabelling predicted classes by the best one-to-one matching to the true
    classes (the Hungarian algorithm): what a clustering with the wrong names would score."""
    predicted = np.asarray(predicted).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    for name, values in (("predicted", predicted), ("labels", labels)):
        if len(values) == 0 or values.min() < 0 or values.max() >= num_classes:
            raise ValueError(f"`{name}` must be a non-empty array of classes in [0, {num_classes}).")
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (predicted, labels), 1)
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / len(labels))


@keras.saving.register_keras_serializable(package="alllib")
class CalibrationError(keras.metrics.Metric):
    """Expected calibration error over everything seen since the last reset.

    It keeps the per-bin sums (count, confidence, correctness) in variables, so the result over
    a dataset evaluated in batches is the ECE of the whole set, not a mean of per-batch ECEs.
    `update_state(labels, probs)` takes integer labels and probability vectors.
    """

    def __init__(self, bins=ECE_BINS, name="ece", **kwargs):
        super().__init__(name=name, **kwargs)
        self.bins = bins
        self.sums = [
            self.add_variable((bins,), initializer="zeros", name=part)
            for part in ("count", "confidence", "correct")
        ]

    def update_state(self, labels, probs, sample_weight=None):
        probs = ops.cast(probs, "float32")
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        confidence = ops.max(probs, axis=-1)
        correct = ops.cast(ops.argmax(probs, axis=-1) == labels, "float32")
        index = ops.clip(ops.cast(ops.ceil(confidence * self.bins), "int32") - 1, 0, self.bins - 1)
        in_bin = ops.one_hot(index, self.bins, dtype="float32")
        for variable, values in zip(self.sums, (1.0, confidence, correct)):
            variable.assign_add(ops.sum(in_bin * ops.reshape(values, (-1, 1)), axis=0))

    def result(self):
        count, confidence, correct = self.sums
        return ops.sum(ops.abs(correct - confidence)) / ops.maximum(ops.sum(count), 1.0)

    def reset_state(self):
        for variable in self.sums:
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self):
        return {**super().get_config(), "bins": self.bins}
