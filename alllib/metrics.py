"""Measurements used across the course: mode coverage for generators, the distances between sets
of image features that GAN papers report (Frechet distance, kernel distance, precision, recall,
density and coverage), accuracy, likelihood and calibration for classifiers, and probes of a
frozen representation (`probe`). NumPy functions for analysis, plus `CalibrationError`, the same
ECE as a Keras metric that `evaluate` accumulates over a whole dataset."""

import hashlib
import importlib.metadata
import os
import warnings

import keras
import numpy as np
from keras import ops
from scipy.optimize import linear_sum_assignment, minimize_scalar
from scipy.stats import rankdata

from alllib import backend, checks, losses, nets
from alllib.stats import ECE_BINS, NLL_FLOOR


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


def stacked_modes(judge, images):
    """Modes of a stacked-digits generator (the VEEGAN and PacGAN protocol, usually on 26,000
    samples): `judge` (a `Judge` of single digits) reads every channel of `images`, `(n, h, w, c)`,
    and the c digits make the sample's mode, one of 10^c. Returns `modes` (how many distinct modes
    the samples hit), `kl_from_uniform` (KL(q || uniform) of their mode histogram q, in nats;
    log 10^c when all fall in one mode) and `counts` (the histogram). Run it on real stacks too:
    the judge's own errors set the ceiling."""
    images = np.asarray(images, "float32")
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"`images` must be a non-empty batch (n, height, width, channels); "
                         f"received shape {images.shape}.")
    channels = images.shape[-1]
    digits = [judge.probs(images[..., c:c + 1]).argmax(1) for c in range(channels)]
    modes = sum(d * 10 ** (channels - 1 - c) for c, d in enumerate(digits))
    counts = np.bincount(modes, minlength=10 ** channels)
    shares = counts[counts > 0] / len(images)
    return {"modes": int((counts > 0).sum()),
            "kl_from_uniform": float(np.sum(shares * np.log(shares * 10 ** channels))),
            "counts": counts}


def _check_features(**sets):
    arrays = {name: np.asarray(values, dtype="float64") for name, values in sets.items()}
    dims = {a.shape[1] if a.ndim == 2 else None for a in arrays.values()}
    for name, a in arrays.items():
        if a.ndim != 2 or len(a) < 2 or not np.isfinite(a).all():
            raise ValueError(f"`{name}` must be finite features of shape (n, d) with n >= 2; received {a.shape}.")
    if len(dims) != 1:
        raise ValueError(f"{' and '.join(f'`{n}`' for n in arrays)} must have the same feature size; received "
                         + ", ".join(str(a.shape) for a in arrays.values()) + ".")
    return arrays.values()


def frechet_distance(real, fake):
    """Frechet distance between Gaussians fitted to two feature sets, `(n, d)` each:
    ||mu_r - mu_f||^2 + Tr(C_r + C_f - 2 (C_r C_f)^(1/2)). FID is this in Inception features;
    the course uses a judge network's features instead, so its numbers are not comparable with FID.
    The trace of the square root is taken from the eigenvalues of the symmetric matrix
    C_r^(1/2) C_f C_r^(1/2), which has the same ones and stays real."""
    real, fake = _check_features(real=real, fake=fake)
    mu_r, mu_f = real.mean(0), fake.mean(0)
    cov_r, cov_f = np.atleast_2d(np.cov(real, rowvar=False)), np.atleast_2d(np.cov(fake, rowvar=False))
    values, vectors = np.linalg.eigh(cov_r)
    root_r = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_r @ cov_f @ root_r), 0, None)).sum()
    return float(np.sum((mu_r - mu_f) ** 2) + np.trace(cov_r) + np.trace(cov_f) - 2 * cross)


def kernel_distance(real, fake, subset_size=1000, subsets=100, seed=0):
    """Kernel distance (KID): the unbiased estimate of the squared MMD with the cubic polynomial
    kernel k(a, b) = (a.b / d + 1)^3, averaged over `subsets` random subsets of `subset_size`
    from each set. Unlike the Frechet distance it is unbiased at any sample size.
    Returns `(mean, std)` over the subsets."""
    real, fake = _check_features(real=real, fake=fake)
    m = min(subset_size, len(real), len(fake))
    d = real.shape[1]
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(subsets):
        a = real[rng.choice(len(real), m, replace=False)]
        b = fake[rng.choice(len(fake), m, replace=False)]
        k_aa, k_bb, k_ab = ((x @ y.T / d + 1) ** 3 for x, y in ((a, a), (b, b), (a, b)))
        within = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
        estimates.append(within - 2 * k_ab.mean())
    return float(np.mean(estimates)), float(np.std(estimates))


def _squared_distances(a, b, chunk=2048):
    """All squared Euclidean distances between rows of `a` and `b`, in float32 row chunks."""
    a, b = a.astype("float32"), b.astype("float32")
    b_norms = (b**2).sum(1)
    return np.concatenate([
        np.maximum((rows**2).sum(1)[:, None] + b_norms[None] - 2 * rows @ b.T, 0)
        for rows in np.array_split(a, max(1, -(-len(a) // chunk)))
    ])


def precision_recall_density_coverage(real, fake, k=5):
    """Improved precision and recall (Kynkaanniemi et al. 2019) and density and coverage
    (Naeem et al. 2020), with a ball around each sample reaching its k-th nearest neighbour in its
    own set. Precision: share of fake samples inside some real ball (quality); recall: share of
    real samples inside some fake ball (diversity); density: fake samples counted once per real
    ball they fall in, over k (about 1 when the sets match, above 1 when fakes crowd the modes);
    coverage: share of real balls that hold at least one fake sample.
    Returns a dict with those four keys."""
    real, fake = _check_features(real=real, fake=fake)
    if not 1 <= k < min(len(real), len(fake)):
        raise ValueError(f"`k` must be from 1 to one less than the smaller set ({min(len(real), len(fake)) - 1}); received {k}.")
    real_radius = np.sort(_squared_distances(real, real), axis=1)[:, k]  # column 0 is the point itself
    fake_radius = np.sort(_squared_distances(fake, fake), axis=1)[:, k]
    cross = _squared_distances(fake, real)  # (fake, real)
    inside_real = cross <= real_radius[None]
    return {
        "precision": float(inside_real.any(1).mean()),
        "recall": float((cross <= fake_radius[:, None]).any(0).mean()),
        "density": float(inside_real.sum() / (k * len(fake))),
        "coverage": float((cross.min(0) <= real_radius).mean()),
    }


class Judge:
    """A classifier trained on real images, used only to measure: its penultimate features feed
    `frechet_distance`, `kernel_distance` and `precision_recall_density_coverage`, its
    probabilities feed `class_coverage`. Keep it apart from every network a method learns from,
    or the method can learn the instrument. Its numbers are its own: not comparable with
    Inception-based FID or KID."""

    def __init__(self, model):
        self.model = model
        self.feature_model = keras.Model(model.inputs, model.get_layer("features").output)

    def features(self, x, batch_size=512):
        return np.asarray(self.feature_model.predict(x, batch_size=batch_size, verbose=0), "float64")

    def probs(self, x, batch_size=512):
        return np.asarray(self.model.predict(x, batch_size=batch_size, verbose=0), "float64")

    def accuracy(self, x, y):
        return accuracy(self.probs(x), y)


def judge_network(input_shape, num_classes, width=32, features=128, name="judge"):
    """The measuring classifier (DESIGN: a judge trained on the dataset itself stands in for
    Inception): two conv blocks with max pooling, a dense layer named "features" whose outputs
    the image metrics compare, dropout, softmax."""
    x = inputs = keras.Input(input_shape)
    for filters in (width, 2 * width):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Dense(features, activation="relu", name="features")(keras.layers.Flatten()(x))
    x = keras.layers.Dropout(0.3)(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x), name=name)


def train_classifier(x, y, num_classes, epochs, seed=0, batch_size=128, verbose=0):
    """A fresh `judge_network` trained with cross-entropy on `(x, y)`: the judge itself, and
    the classifier of the classification accuracy score."""
    x, y = np.asarray(x, "float32"), np.asarray(y).reshape(-1)
    if x.ndim != 4 or len(x) != len(y):
        raise ValueError(f"`x` must be images (n, height, width, channels) with one label each; received {x.shape} and {len(y)} labels.")
    keras.utils.set_random_seed(seed)
    model = judge_network(x.shape[1:], num_classes)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=verbose)
    return model


def train_judge(x, y, num_classes, epochs, seed=0, cache_dir=None, verbose=0):
    """Train a `Judge` on real `(x, y)`, or load it from `cache_dir` when the same judge (same
    data, architecture, epochs, seed and library version) was trained before. Tests and fast mode
    pass no `cache_dir`, so they never read a cached instrument."""
    if cache_dir is None:
        return Judge(train_classifier(x, y, num_classes, epochs, seed, verbose=verbose))
    key = hashlib.sha256(np.ascontiguousarray(x).tobytes() + np.ascontiguousarray(y).tobytes())
    key.update(f"nets.judge|{num_classes}|{epochs}|{seed}|{_library_version()}|{keras.backend.backend()}".encode())
    path = os.path.join(cache_dir, f"judge-{key.hexdigest()[:16]}.keras")
    if os.path.exists(path):
        return Judge(keras.saving.load_model(path))
    model = train_classifier(x, y, num_classes, epochs, seed, verbose=verbose)
    os.makedirs(cache_dir, exist_ok=True)
    model.save(path + ".part.keras")
    os.replace(path + ".part.keras", path)  # a killed run never leaves half a judge behind
    return Judge(model)


def classification_accuracy_score(x_generated, y_generated, x_test, y_test, num_classes, epochs, seed=0):
    """CAS (Ravuri and Vinyals 2019): test accuracy on real images of a classifier trained only on
    a conditional generator's samples and the labels it was asked for. Train the same classifier
    on real images (`train_classifier`) for the ceiling."""
    model = train_classifier(x_generated, y_generated, num_classes, epochs, seed)
    return accuracy(model.predict(np.asarray(x_test, "float32"), batch_size=512, verbose=0), y_test)


def _library_version():
    try:
        return importlib.metadata.version("alllib")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


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


def nll(probs, labels, floor=NLL_FLOOR):
    """Mean negative log-likelihood of the true class, its probability floored at `floor`: the
    smallest normal float32, so a probability that underflowed to 0 costs 87.3 nats. Keras's
    1e-7 would cap every example at 16.1 nats and make all confidently wrong models look alike."""
    probs, labels = _check_probs(probs, labels)
    true_class = probs[np.arange(len(labels)), labels].astype("float64")
    return float(-np.log(np.clip(true_class, floor, 1.0)).mean())


def fit_temperature(probs, labels):
    """Temperature scaling (Guo et al. 2017): the T > 0 that minimises the NLL of
    softmax(log(probs) / T) on held-out data. Fit it on the validation split, apply it to the
    test split with `scale_temperature`; T > 1 softens an overconfident model, T < 1 sharpens
    an underconfident one. Accuracy is unchanged: dividing by T keeps the ranking."""
    probs, labels = _check_probs(probs, labels)
    low, high = 0.05, 20.0
    result = minimize_scalar(
        lambda log_t: nll(scale_temperature(probs, np.exp(log_t)), labels),
        bounds=(np.log(low), np.log(high)), method="bounded",
    )
    temperature = float(np.exp(result.x))
    if not low * 1.01 < temperature < high / 1.01:
        warnings.warn(f"The fitted temperature {temperature:.3g} sits at the edge of the search "
                      f"range [{low}, {high}]: these probabilities are too far from calibrated "
                      "for one temperature to fix.", stacklevel=2)
    return temperature


def scale_temperature(probs, temperature):
    """`probs` recalibrated: softmax(log(probs) / temperature)."""
    if not temperature > 0:
        raise ValueError(f"`temperature` must be positive; received {temperature}.")
    logits = np.log(np.clip(np.asarray(probs, "float64"), NLL_FLOOR, 1.0))
    return _softmax(logits / temperature)


def _softmax(logits):
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


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
    `update_state(labels, probs, sample_weight=None)` takes integer labels and probability
    vectors; an example of weight 0 is left out.
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
        if sample_weight is not None:
            in_bin = in_bin * ops.reshape(ops.cast(sample_weight, "float32"), (-1, 1))
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


def fresh_discriminator(discriminator, real, fake, epochs=20, batch_size=64, seed=0,
                        fine_tune=False):
    """A fresh copy of `discriminator`'s architecture (new weights), trained with binary
    cross-entropy to tell `real` from `fake`. Trained after the fact against a frozen generator,
    it has no game to play: it simply finds whatever separates the two sets. For a
    discriminator with several inputs (a conditional one's `[x, label_vector]`), `real` and
    `fake` are lists of arrays in that order. With `fine_tune`, the copy starts from
    `discriminator`'s own weights instead: the control for a fresh one, trained the same way."""
    if nets.scores_depend_on_batch(discriminator):
        raise ValueError(
            "`discriminator` has a layer that looks across the batch (MinibatchStdDev or "
            "BatchFrequencies), so its scores depend on how real and "
            "generated examples are mixed in a batch; use one without it for this check."
        )
    keras.utils.set_random_seed(seed)  # note: resets Python, NumPy and backend global seeds
    fresh = keras.models.clone_model(discriminator)
    if fine_tune:
        fresh.set_weights(discriminator.get_weights())
    fresh.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    several = isinstance(real, (list, tuple))
    x = ([np.concatenate(pair) for pair in zip(real, fake)] if several
         else np.concatenate([real, fake]))
    n_real, n_fake = (len(real[0]), len(fake[0])) if several else (len(real), len(fake))
    y = np.concatenate([np.ones(n_real), np.zeros(n_fake)]).astype("float32")[:, None]
    fresh.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)
    return fresh


def logit_accuracy(discriminator, real, fake, threshold=0.0):
    """Balanced accuracy of a discriminator: real scores above `threshold`, fake below."""
    accuracy = losses.threshold_accuracy(
        discriminator(real, training=False), discriminator(fake, training=False), threshold
    )
    return float(keras.ops.convert_to_numpy(accuracy))


def logit_auc(discriminator, real, fake):
    """Area under the ROC curve of a discriminator's scores: the chance that a real example
    outscores a generated one (ties count half). Unlike `logit_accuracy` it needs no threshold,
    so judges whose scores sit at different offsets compare fairly."""
    scores = [np.asarray(ops.convert_to_numpy(discriminator(x, training=False)), "float64").ravel()
              for x in (real, fake)]
    ranks = rankdata(np.concatenate(scores))
    n_real, n_fake = len(scores[0]), len(scores[1])
    return float((ranks[:n_real].sum() - n_real * (n_real + 1) / 2) / (n_real * n_fake))


def adam_step(optimizer, grads, variables):
    """What a Keras `Adam` (without amsgrad) would do with `grads` for `variables` on its next
    step, computed from its state without changing it: a dict of flat NumPy arrays over every
    parameter, `grad`, `sqrt_v` (the root of the second-moment estimate after this gradient,
    which still remembers earlier ones) and `step` (the change the step makes), and the scalars
    `epsilon` and `learning_rate`. Adam's step is close to the learning rate while `sqrt_v` is
    well above `epsilon`, and about `alpha * m / epsilon` where the gradients are far below it:
    reading the three together says which of the two stalls a vanishing gradient."""
    if not isinstance(optimizer, keras.optimizers.Adam) or optimizer.amsgrad:
        raise TypeError(f"`optimizer` must be a keras.optimizers.Adam without amsgrad; received "
                        f"{type(optimizer).__name__}.")
    numpy = lambda value: np.asarray(ops.convert_to_numpy(value), "float64")
    t = float(numpy(optimizer.iterations)) + 1
    beta_1, beta_2 = float(numpy(optimizer.beta_1)), float(numpy(optimizer.beta_2))
    learning_rate = float(numpy(optimizer._get_current_learning_rate()))
    alpha = learning_rate * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
    parts = {"grad": [], "sqrt_v": [], "step": []}
    for grad, variable in zip(grads, variables):
        index = optimizer._get_variable_index(variable)
        g = numpy(grad).ravel()
        m = numpy(optimizer._momentums[index]).ravel() * beta_1 + (1 - beta_1) * g
        v = numpy(optimizer._velocities[index]).ravel() * beta_2 + (1 - beta_2) * g ** 2
        parts["grad"].append(g)
        parts["sqrt_v"].append(np.sqrt(v))
        parts["step"].append(-alpha * m / (np.sqrt(v) + optimizer.epsilon))
    return {**{k: np.concatenate(v) for k, v in parts.items()},
            "epsilon": float(optimizer.epsilon), "learning_rate": learning_rate}


def generator_adam_step(gan, n=256, seed=0):
    """Why a generator stops moving, read from an unconditional `GAN` without changing it:
    `adam_step` for the generator's gradient of its own loss on `n` fixed noise vectors, plus
    `slope`, per generated sample the norm of the discriminator's score gradient with respect to
    that sample: zero where the discriminator is flat, so the generator has no direction even
    before Adam sees the gradient. Both networks run in inference mode, so that nothing moves
    (a BatchNorm layer in training mode would update its statistics): for a generator with
    BatchNorm the gradient is close to, not equal to, the one training computes."""
    from alllib.conditional_gan import ConditionalGAN  # here: both import this module
    from alllib.gan import GAN

    if not isinstance(gan, GAN) or isinstance(gan, ConditionalGAN):
        raise TypeError(f"`gan` must be an unconditional alllib.GAN; received {type(gan).__name__}.")
    if nets.scores_depend_on_batch(gan.discriminator):
        raise ValueError("`gan`'s discriminator looks across the batch (MinibatchStdDev or "
                         "BatchFrequencies), so a sample's slope would mix in the others'.")
    if not isinstance(gan.g_optimizer, keras.optimizers.Adam) or gan.g_optimizer.amsgrad:
        raise TypeError(f"`gan.g_optimizer` must be a keras.optimizers.Adam without amsgrad (and "
                        f"no loss scaling); received {type(gan.g_optimizer).__name__}.")
    noise = keras.random.normal((checks.integer("n", n, 1), gan.latent_dim), seed=seed)
    variables = gan.generator.trainable_variables

    def objective():
        scores = gan.discriminator(gan.generator(noise, training=False), training=False)
        return losses.generator_loss(gan.loss_fn, scores), ()

    _, _, grads = backend.gradients(objective, variables)
    grads = [ops.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
    fake = gan.generator(noise, training=False)
    squared = losses._squared_input_gradient(lambda p: gan.discriminator(p, training=False), fake)
    return {**adam_step(gan.g_optimizer, grads, variables),
            "slope": np.sqrt(np.asarray(ops.convert_to_numpy(squared), "float64"))}


PROBE_RIDGES = 10.0 ** np.arange(-3.0, 3.5, 0.5)  # in units of the mean squared feature norm
PROBE_NEIGHBOURS = (1, 3, 5, 10, 20)


def layer_outputs(network, x, layer="features", batch_size=512):
    """The outputs of `network`'s layer named `layer` on `x`, as a float32 NumPy array (the
    course's DCGAN trunks name their flattened convolution features "features")."""
    try:
        output = network.get_layer(layer).output
    except ValueError:
        names = [lay.name for lay in network.layers]
        raise ValueError(f"`{network.name}` has no layer named {layer!r}; its layers are "
                         f"{names}.") from None
    inner = keras.Model(network.inputs[0] if len(network.inputs) == 1 else network.inputs, output)
    return np.concatenate([  # called directly: `predict` would trace anew for every network
        np.asarray(ops.convert_to_numpy(inner(x[i:i + batch_size], training=False)), "float32")
        for i in range(0, len(x), batch_size)])


def probe(train, val, test, num_classes, knn=True):
    """How readable the classes are in frozen features: test accuracy of a linear probe and of a
    k-nearest-neighbour vote, each with its regularisation chosen on `val`, never on `test`.

    The linear probe is ridge regression onto one-hot labels (a least-squares classifier):
    closed form, so no optimiser settings hide in it, and one eigendecomposition of the smaller
    Gram matrix serves every ridge in `PROBE_RIDGES`. Features are centred on the training
    mean and divided by their root-mean-square norm, so one grid suits every representation.
    The vote takes the `k` (from `PROBE_NEIGHBOURS`) most cosine-similar training examples.

    Args:
        train, val, test: pairs `(features (n, d), integer labels (n,))`.
        num_classes: K; labels lie in [0, K).
        knn: False skips the vote (it compares every test example with every training one).

    Returns:
        a dict: `linear` and `knn`, test accuracies; `ridge` and `k`, the chosen settings;
        `linear_val` and `knn_val`, their validation accuracies."""
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = [
        _probe_pair(name, pair, num_classes) for name, pair in
        (("train", train), ("val", val), ("test", test))]
    _check_features(train=x_train, val=x_val, test=x_test)
    mean = x_train.mean(0)
    scale = np.sqrt(np.mean(np.sum((x_train - mean) ** 2, axis=1))) or 1.0
    x_train, x_val, x_test = [(a - mean) / scale for a in (x_train, x_val, x_test)]
    targets = np.eye(num_classes)[y_train]
    intercept = targets.mean(0)  # the features are centred, so this is the fit's intercept
    targets -= intercept
    if len(x_train) >= x_train.shape[1]:  # primal: the (d, d) Gram matrix
        eigenvalues, vectors = np.linalg.eigh(x_train.T @ x_train)
        towards, weights = vectors, vectors.T @ (x_train.T @ targets)
    else:  # dual: the (n, n) one
        eigenvalues, vectors = np.linalg.eigh(x_train @ x_train.T)
        towards, weights = x_train.T @ vectors, vectors.T @ targets
    eigenvalues = np.maximum(eigenvalues, 0.0)

    def ridge_scores(projected, ridge):  # `projected`: features times `towards`
        return projected / (eigenvalues + ridge) @ weights + intercept

    val_projected = x_val @ towards
    val_accuracy = {r: float(np.mean(ridge_scores(val_projected, r).argmax(1) == y_val))
                    for r in PROBE_RIDGES}
    ridge = max(val_accuracy, key=val_accuracy.get)  # ties: the smaller ridge (the first)
    result = {"linear": float(np.mean(ridge_scores(x_test @ towards, ridge).argmax(1) == y_test)),
              "ridge": float(ridge), "linear_val": val_accuracy[ridge]}
    if knn:
        ks = [k for k in PROBE_NEIGHBOURS if k <= len(x_train)]
        val_votes = _neighbour_votes(x_train, y_train, x_val, ks, num_classes)
        val_accuracy = {k: float(np.mean(votes == y_val)) for k, votes in val_votes.items()}
        k = max(val_accuracy, key=val_accuracy.get)  # ties: the smaller k
        votes = _neighbour_votes(x_train, y_train, x_test, [k], num_classes)[k]
        result.update(knn=float(np.mean(votes == y_test)), k=k, knn_val=val_accuracy[k])
    return result


def _probe_pair(name, pair, num_classes):
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"`{name}` must be a pair (features, labels); received "
                         f"{type(pair).__name__}.")
    features = np.asarray(pair[0], "float64")
    labels = checks.labels(f"`{name}`'s labels", pair[1], num_classes)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"`{name}` must pair features of shape (n, d) with n labels; received "
                         f"shape {features.shape} and {len(labels)} labels.")
    return features, labels


def _neighbour_votes(x_train, y_train, queries, ks, num_classes, chunk=1024):
    """The class most common among each query's k most cosine-similar training examples, for
    each k in `ks`; a tie goes to the class whose tied neighbours are the more similar."""
    unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    x_train, queries = unit(x_train), unit(queries)
    votes = {k: [] for k in ks}
    for start in range(0, len(queries), chunk):
        similarity = queries[start:start + chunk] @ x_train.T
        order = np.argsort(-similarity, axis=1, kind="stable")[:, :max(ks)]
        for k in ks:
            nearest = order[:, :k]
            one_hot = np.eye(num_classes)[y_train[nearest]]  # (q, k, K)
            weight = np.take_along_axis(similarity, nearest, axis=1)[..., None]
            votes[k].append((one_hot.sum(1) + 1e-6 * (one_hot * weight).sum(1)).argmax(1))
    return {k: np.concatenate(v) for k, v in votes.items()}


def global_norm(grads):
    """The L2 norm of a list of gradient tensors taken together."""
    return ops.sqrt(sum(ops.sum(ops.square(ops.cast(g, "float32"))) for g in grads))


def predictor_gradient_norms(learner, x, y):
    """Norms of an `AdversarialLabelLearner`'s predictor gradient from each term of its loss, on
    one batch `(x, y)`, and the adversarial gradient factored at the probabilities.

    Returns a dict with `adversarial` and `ce` (the latter already scaled by `ce_weight`),
    `adversarial_share = adversarial / (adversarial + ce)`: how much of the hybrid's push comes
    from the discriminator; `probability_gradient`, the norm of the adversarial loss's gradient
    with respect to the predicted probabilities, less its mean over the classes, which no
    softmax can follow (how much the discriminator's verdict would change), and `softmax_gain`,
    the norm of that gradient carried back through the softmax to the logits over its own norm
    (how much of it the softmax lets through; small when the outputs are saturated). The predictor's gradient is the product of the two, times the
    network's own Jacobian. Runs eagerly, in inference mode, and changes nothing.
    """
    from alllib.auction import LabelAuction
    from alllib.distiller import Distiller

    if isinstance(learner, (Distiller, LabelAuction)):
        raise TypeError("predictor_gradient_norms splits an AdversarialLabelLearner's loss; "
                        f"received a {type(learner).__name__}, whose loss has other terms.")
    learner.check_data(np.asarray(x), np.asarray(y), "`x`", "`y`")
    one_hot = ops.one_hot(ops.convert_to_tensor(np.reshape(y, -1), "int32"), learner.num_classes)
    x = ops.convert_to_tensor(x)
    norms = {}
    for term in ("adversarial", "ce"):
        def objective(term=term):
            probs = ops.cast(learner.predictor(x, training=False), "float32")
            adversarial, ce = learner.predictor_terms(x, one_hot, probs, training=False)
            return (adversarial if term == "adversarial" else learner.ce_weight * ce), ()

        _, _, grads = backend.gradients(objective, learner.predictor.trainable_variables)
        norms[term] = float(ops.convert_to_numpy(global_norm(grads)))
    total = norms["adversarial"] + norms["ce"]
    norms["adversarial_share"] = norms["adversarial"] / total if total else float("nan")

    probs = ops.cast(learner.predictor(x, training=False), "float32")
    _, _, grad = backend.tensor_gradient(
        lambda p: (learner.predictor_terms(x, one_hot, p, training=False)[0], ()), probs)
    p = ops.convert_to_numpy(probs).astype("float64")
    g = np.zeros_like(p) if grad is None else ops.convert_to_numpy(grad).astype("float64")
    g = g - g.mean(-1, keepdims=True)  # a push on every class alike cannot move a softmax
    to_logits = p * (g - (p * g).sum(-1, keepdims=True))  # the softmax Jacobian's transpose times g
    norms["probability_gradient"] = float(np.linalg.norm(g))
    norms["softmax_gain"] = (float(np.linalg.norm(to_logits) / norms["probability_gradient"])
                             if norms["probability_gradient"] else float("nan"))
    return norms
