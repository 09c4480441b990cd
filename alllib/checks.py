"""Argument checks shared by alllib's public entry points: one clear message per mistake."""

import numbers

import keras
import numpy as np


def integer(name, value, minimum):
    """`value` as an int if it is an integer (Python or NumPy, not bool) >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"`{name}` must be {expected}; received {value!r}.")
    return int(value)


def number(name, value, low=0.0, high=None, high_inclusive=False):
    """`value` as a float if it is a real number in [low, high] (or [low, high))."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and value >= low
    if ok and high is not None:
        ok = value <= high if high_inclusive else value < high
    if not ok:
        if high is None:
            expected = "a non-negative number" if low == 0 else f"a number >= {low:g}"
        else:
            expected = f"a number in [{low:g}, {high:g}{']' if high_inclusive else ')'}"
        raise ValueError(f"`{name}` must be {expected}; received {value!r}.")
    return float(value)


def labels(name, y, num_classes):
    """Integer class labels of shape (n,) or (n, 1) in [0, num_classes), as a flat array."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"{name} must be integer class labels of shape (n,) or (n, 1); received shape "
            f"{y.shape}. For one-hot labels pass `labels.argmax(-1)`."
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must have an integer dtype (class indices); received {y.dtype}.")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, num_classes) = [0, {num_classes}); found values "
            f"from {y.min()} to {y.max()}."
        )
    return y


def label_batch(labels):
    """A batch of integer labels inside a train step, as a flat int32 tensor. Arrays are checked
    in full before `fit` (`labels`); data from a generator only gets this shape check, which
    fails while tracing, with a message."""
    shape = tuple(labels.shape)
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise ValueError(
            "labels must be integer class labels of shape (batch,) or (batch, 1); received a "
            f"batch of shape {shape}. For one-hot labels pass `labels.argmax(-1)`."
        )
    return keras.ops.reshape(keras.ops.cast(labels, "int32"), (-1,))


def first_batch(dataset):
    """`(x, y)` of a `tf.data.Dataset`'s first batch as NumPy arrays (`y` may be None), or
    None if `dataset` is not one (arrays are checked whole; generators are not peeked at)."""
    if not (hasattr(dataset, "take") and hasattr(dataset, "element_spec")):
        return None
    for batch in dataset.take(1):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(batch)
        return np.asarray(x), None if y is None else np.asarray(y)
    return None


def finite(name, array):
    """Refuse NaN or infinite values in a floating-point array."""
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.sum(~np.isfinite(array)))
        raise ValueError(f"{name} contains {bad} NaN or infinite values; clean the data first.")


def called(name, fn, inputs):
    """`fn()`, a first call of the network `name` on `inputs` (described in words); a failure
    becomes a ValueError that says which network could not take which inputs."""
    try:
        return fn()
    except Exception as error:
        raise ValueError(f"`{name}` could not be called on {inputs}: {error}") from error


def one_score_each(scores, batch, inputs, score="one score"):
    """Refuse a discriminator's output that is not one score per example, `(batch, 1)`."""
    if tuple(scores.shape) != (batch, 1):
        raise ValueError(
            f"`discriminator` must return {score} per example, shape (batch, 1); on {inputs} it "
            f"returned shape {tuple(scores.shape)}."
        )
