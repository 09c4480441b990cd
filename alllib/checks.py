"""Argument checks shared by alllib's public entry points: one clear message per mistake."""

import contextlib
import copy
import inspect
import numbers
import re

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


def labels(name, y, num_classes, unlabeled=False, explain_unlabeled=False):
    """Integer class labels of shape (n,) or (n, 1) in [0, num_classes), as a flat array (read
    back from the GPU if they are there); with `unlabeled`, -1 also marks an unlabeled example.
    `explain_unlabeled`: the labels a model trains on, where a -1 is the unlabeled mark."""
    if y is None:  # a dataset's labels are named "the labels in ..." or "... of batch i of ..."
        missing = (f"{name} are missing (the dataset must yield (samples, labels))"
                   if name.startswith("the labels") else f"{name} is missing")
        raise ValueError(f"{missing}: this model trains on integer class labels in "
                         f"[0, {num_classes}).")
    if not isinstance(y, np.ndarray) and hasattr(y, "dtype"):
        y = keras.ops.convert_to_numpy(y)  # a backend tensor, copied from the GPU if it is there
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
    low = -1 if unlabeled else 0
    if len(y) and (y.min() < low or y.max() >= num_classes):
        allowed = f"[0, num_classes) = [0, {num_classes})"
        allowed += " or -1 (unlabeled)" if unlabeled else ""
        hint = ("" if unlabeled or not explain_unlabeled or y.min() != -1 else
                f" -1 in {name} marks unlabeled examples (alllib.data.UNLABELED), which this model "
                "cannot learn from: pass the labelled examples alone (a Distiller or a "
                "SemiSupervisedGAN takes unlabeled ones).")
        raise ValueError(f"{name} must lie in {allowed}; found values from {y.min()} to "
                         f"{y.max()}.{hint}")
    return y


def inputs_with_labels(x_name, x, y_name, y):
    """One label per example in every input leaf of `x` (an array, or a list or dict of them for
    a multi-input network), every input finite; returns the leaves."""
    leaves = keras.tree.flatten(x)
    lengths = sorted({len(leaf) for leaf in leaves})
    if lengths != [len(y)]:
        raise ValueError(f"{x_name} and {y_name} must have the same length; received "
                         f"{' and '.join(map(str, lengths))} and {len(y)}.")
    for leaf in leaves:
        finite(x_name, leaf)
    return leaves


def generator_samples(name, x, shape, what="real samples"):
    """Real data for a generator's opponent: one float array of `what`, each shaped `shape` (the
    generator's output), finite."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be one array of {what}; received {type(x).__name__}.")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            f"{name} must hold floats on the generator's scale; received dtype {x.dtype}. "
            "Scale images first, for example x.astype('float32') / 127.5 - 1 for a tanh "
            "generator (alllib.data.load does this).")
    if tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"{name} must be {what} shaped like the generator's output, "
                         f"(n, {', '.join(map(str, shape))}); received shape {x.shape}.")
    finite(name, x)


def label_batch(labels):
    """A train step's batch of integer labels as a flat int32 tensor, checked while tracing
    (values are checked on the host: `labels` for arrays, `streamed_labels` for streams)."""
    shape = tuple(labels.shape)
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise ValueError(
            "labels must be integer class labels of shape (batch,) or (batch, 1); received a "
            f"batch of shape {shape}. For one-hot labels pass `labels.argmax(-1)`."
        )
    dtype = keras.backend.standardize_dtype(labels.dtype)
    if "int" not in dtype:  # a cast would truncate 2.7 to class 2 silently
        raise ValueError(f"labels must have an integer dtype (class indices); received a batch "
                         f"of {dtype}.")
    return keras.ops.reshape(keras.ops.cast(labels, "int32"), (-1,))


_STREAM_ERROR = "alllib: "  # marks a streamed batch's error raised inside a tf.data pipeline


def streamed_labels(data, name, num_classes, unlabeled=False):
    """`data` with every batch's labels checked by `labels` as the batch is read, on the host,
    before the step that would train on it: a `tf.data.Dataset` in its pipeline; a generator, a
    `PyDataset` or a PyTorch `DataLoader` as it yields; anything else is returned as it is
    (arrays are checked whole). Labels already on a GPU are read back to be checked, which makes
    each step wait for that copy; labels that come from the host cost nothing to check."""
    def check(y, index):
        try:
            labels(f"the labels of batch {index} of {name}", y, num_classes, unlabeled,
                   explain_unlabeled=True)
        except ValueError as error:  # marked: TensorFlow may carry it inside its own error
            raise ValueError(_STREAM_ERROR + str(error)) from None
        return True

    def checked_batch(batch, index):  # no labels is refused too: here, not inside the step
        check(keras.utils.unpack_x_y_sample_weight(batch)[1], index)
        return batch

    if hasattr(data, "element_spec") and hasattr(data, "enumerate"):  # a tf.data.Dataset
        import tensorflow as tf  # a tf.data pipeline is TensorFlow on every backend

        def in_pipeline(index, batch):
            y = keras.utils.unpack_x_y_sample_weight(batch)[1]
            if y is None:  # the structure is static: refused as the pipeline is built
                labels(f"the labels in {name}", None, num_classes)
            with tf.control_dependencies([tf.numpy_function(check, [y, index], tf.bool)]):
                return tf.nest.map_structure(tf.identity, batch)

        return data.enumerate().map(in_pipeline)
    if inspect.isgenerator(data):
        return (checked_batch(batch, index) for index, batch in enumerate(data))
    if isinstance(data, keras.utils.PyDataset):
        class Checked(type(data)):
            def __getitem__(self, index):
                return checked_batch(super().__getitem__(index), index)
    elif type(data).__name__ == "DataLoader" and type(data).__module__.startswith("torch."):
        class Checked(type(data)):
            def __iter__(self):
                return (checked_batch(b, index) for index, b in enumerate(super().__iter__()))
    else:
        return data
    checked = copy.copy(data)  # the same object, its batches checked
    checked.__class__ = Checked
    return checked


@contextlib.contextmanager
def stream_errors():
    """Turn a streamed batch's failed check, which TensorFlow reports inside its own error,
    back into the one-line `ValueError` it is."""
    try:
        yield
    except Exception as error:
        found = re.search(re.escape(_STREAM_ERROR) + r"(.*?\.)(?=\]|$)", str(error), re.M)
        if found is None:
            raise
        raise ValueError(found.group(1)) from None


def no_batch_weights(model, sample_weight):
    """Refuse sample weights that arrive inside the data, as `fit(sample_weight=...)` is."""
    if sample_weight is not None:
        raise ValueError(f"The data yields sample weights, (x, y, weights); {model} weights "
                         "every example equally: yield (x, y).")


def fit_arrays(x, y, validation_data=None, inputs="inputs"):
    """The data `fit` will use, as NumPy `(x, y, x_name, y_name)` to check before tracing (`y`
    may be None): arrays whole, a `tf.data.Dataset` by its first batch ("the {inputs} in `x`");
    nothing for a generator or `PyDataset` (a model's `check_stream` checks batches as read)."""
    sets = [(x, y, "`x`", "`y`")]
    if isinstance(validation_data, (tuple, list)) and len(validation_data) not in (2, 3):
        raise ValueError(
            "`validation_data` must be (x, y), or a dataset that yields (x, y) batches; received "
            f"a {type(validation_data).__name__} of {len(validation_data)}.")
    if isinstance(validation_data, (tuple, list)):
        sets.append((*validation_data[:2], "`validation_data[0]`", "`validation_data[1]`"))
    found = []
    for xs, ys, x_name, y_name in sets:
        batch = first_batch(xs)
        if batch is not None:
            found.append((*batch, f"the {inputs} in {x_name}", f"the labels in {x_name}"))
        elif all(hasattr(leaf, "shape") for leaf in keras.tree.flatten(xs)):
            found.append((keras.tree.map_structure(np.asarray, xs),  # several inputs stay apart
                          None if ys is None else np.asarray(ys), x_name, y_name))
    for xs, _, x_name, _ in found:
        for leaf in keras.tree.flatten(xs):
            if leaf.ndim == 0 or len(leaf) == 0:
                raise ValueError(f"{x_name} is empty; received shape {leaf.shape}.")
    return found


def duel_compile_arguments(model, kwargs, prefixes):
    """Refuse the `keras.Model.compile` arguments a duel cannot use, naming what to do instead."""
    optimizers = ", ".join(f"{prefix}_optimizer=..." for prefix in prefixes)
    if "optimizer" in kwargs:
        raise TypeError(f"{model}.compile() takes one optimizer per player ({optimizers}), not "
                        "`optimizer`.")
    for name in ("metrics", "weighted_metrics", "loss_weights"):
        if kwargs.get(name) is not None:
            raise ValueError(
                f"`{name}` is not supported by {model}.compile(): a duel logs its own players' "
                "losses, accuracy and gradient norms; measure anything else with a callback or "
                "after `fit` (alllib.metrics).")


# `Duel.compile`'s game settings and their defaults, for a model whose game is fixed (a test
# in tests/backend/test_representations.py keeps them equal to compile's own).
GAME_DEFAULTS = {"loss": "non_saturating", "penalty": None, "penalty_weight": None, "d_steps": 1,
                 "label_smoothing": 0.0}


def fixed_game(why, kwargs):
    """`compile`'s keyword arguments with the game settings at their defaults; any other value
    (a saved model recompiles with the defaults) is refused, saying `why`."""
    changed = [k for k, v in GAME_DEFAULTS.items() if k in kwargs and kwargs[k] != v]
    if changed:
        raise ValueError(f"{why}, so `compile` takes no {', '.join(f'`{k}`' for k in changed)}.")
    return {**kwargs, **GAME_DEFAULTS}


def no_weights(model, kwargs, validation_data=None):
    weights = dict(kwargs)
    if isinstance(validation_data, (tuple, list)) and len(validation_data) == 3:
        weights["validation_data[2]"] = validation_data[2]
    for name in ("sample_weight", "class_weight", "validation_data[2]"):
        if weights.get(name) is not None:
            raise ValueError(
                f"`{name}` is not supported by {model}: both players weight every example "
                "equally."
            )


def first_batch(dataset):
    """`(x, y)` of a `tf.data.Dataset`'s first batch as NumPy arrays (`y` may be None), or None."""
    if not (hasattr(dataset, "take") and hasattr(dataset, "element_spec")):
        return None
    for batch in dataset.take(1):
        x, y, weights = keras.utils.unpack_x_y_sample_weight(batch)
        no_batch_weights("this model", weights)
        return keras.tree.map_structure(np.asarray, x), None if y is None else np.asarray(y)
    return None


def finite(name, array):
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.sum(~np.isfinite(array)))
        raise ValueError(f"{name} contains {bad} NaN or infinite values; clean the data first.")


def called(name, fn, inputs):
    """`fn()`, network `name`'s first call; a failure names it and `inputs` (described in words)."""
    try:
        return fn()
    except Exception as error:
        raise ValueError(f"`{name}` could not be called on {inputs}: {error}") from error


def ends_in_logits(network):
    """Refuse a discriminator whose last layer applies a sigmoid (the classic DCGAN tutorial's):
    the adversarial losses take logits, and would read its probabilities as scores."""
    layers = getattr(network, "layers", None)
    activation = getattr(layers[-1] if layers else network, "activation", None)
    if getattr(activation, "__name__", None) == "sigmoid":
        raise ValueError(
            "`discriminator` ends in a sigmoid, but alllib's losses take a raw score (a logit) "
            "and apply the sigmoid themselves, more stably. Remove the final sigmoid (for "
            "example `Dense(1)` with no activation).")


def one_score_each(scores, batch, inputs, score="one score"):
    if tuple(scores.shape) != (batch, 1):
        raise ValueError(
            f"`discriminator` must return {score} per example, shape (batch, 1); on {inputs} it "
            f"returned shape {tuple(scores.shape)}."
        )
