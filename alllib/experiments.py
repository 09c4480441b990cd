"""Train classifiers under different objectives with several seeds and measure each run.

A method is a plain dict of settings, so a comparison is data: `{"name": {...}, ...}`.
`kind="ce"` trains the predictor alone with cross-entropy (optionally label-smoothed);
`kind="adversarial"` wraps it in an `AdversarialLabelLearner`. Every run of a sweep uses the same
predictor architecture, data, batch size and epochs, and a fresh seed per repetition.
"""

import time

import keras
import numpy as np

from alllib import metrics, nets
from alllib.label_learner import AdversarialLabelLearner
from alllib.targets import SoftTargets

ADVERSARIAL_DEFAULTS = dict(
    conditional=False, epsilon=0.1, concentration=50.0, ce_weight=0.0, loss="non_saturating",
    penalty=None, penalty_weight=10.0, d_steps=1, spectral_norm=False,
)


def build(method, input_shape, num_classes, seed, learning_rate=1e-3):
    """The compiled model for `method` (a dict with `kind` and its settings) at `seed`."""
    keras.utils.set_random_seed(seed)
    predictor = nets.mlp_predictor(input_shape, num_classes)
    settings = dict(method)
    kind = settings.pop("kind", "adversarial")
    if kind == "ce":
        smoothing = settings.pop("label_smoothing", 0.0)
        if settings:
            raise ValueError(
                f"Unknown settings {sorted(settings)} for kind 'ce'; expected label_smoothing."
            )
        predictor.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=smoothing),
        )
        return predictor
    if kind != "adversarial":
        raise ValueError(f"Unknown method kind {kind!r}; expected 'ce' or 'adversarial'.")
    unknown = set(settings) - set(ADVERSARIAL_DEFAULTS)
    if unknown:
        raise ValueError(
            f"Unknown settings {sorted(unknown)}; expected {sorted(ADVERSARIAL_DEFAULTS)}."
        )
    s = {**ADVERSARIAL_DEFAULTS, **settings}
    discriminator = nets.label_discriminator(
        num_classes,
        input_shape=input_shape if s["conditional"] else None,
        spectral_norm=s["spectral_norm"],
    )
    targets = SoftTargets(s["epsilon"], s["concentration"] if s["epsilon"] > 0 else None)
    learner = AdversarialLabelLearner(
        predictor, discriminator, num_classes, conditional=s["conditional"], targets=targets,
        ce_weight=s["ce_weight"], seed=seed,
    )
    learner.compile(
        d_optimizer=keras.optimizers.Adam(learning_rate),
        p_optimizer=keras.optimizers.Adam(learning_rate),
        loss=s["loss"], penalty=s["penalty"], penalty_weight=s["penalty_weight"],
        d_steps=s["d_steps"],
    )
    return learner


def run(method, train, test, num_classes, seed, epochs, batch_size=128, callbacks=()):
    """Train `method` once and measure it on `test`. Returns `(row, model, history)`."""
    (x, y), (x_test, y_test) = train, test
    model = build(method, x.shape[1:], num_classes, seed)
    start = time.perf_counter()
    if isinstance(model, AdversarialLabelLearner):
        history = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0,
                            shuffle=True, callbacks=list(callbacks))
    else:
        history = model.fit(x, keras.utils.to_categorical(y, num_classes), batch_size=batch_size,
                            epochs=epochs, verbose=0, shuffle=True, callbacks=list(callbacks))
    seconds = time.perf_counter() - start
    probs = predict_probs(model, x_test)
    predicted = probs.argmax(1)
    row = dict(
        seed=seed,
        accuracy=metrics.accuracy(probs, y_test),
        nll=metrics.nll(probs, y_test),
        ece=metrics.expected_calibration_error(probs, y_test),
        matched_accuracy=metrics.matched_accuracy(predicted, y_test, num_classes),
        top_class_share=float(np.bincount(predicted, minlength=num_classes).max() / len(predicted)),
        classes_predicted=int(len(np.unique(predicted))),
        d_acc=float(history.history["d_acc"][-1]) if "d_acc" in history.history else float("nan"),
        seconds_per_epoch=seconds / epochs,
    )
    return row, model, history


def predict_probs(model, x, batch_size=1024):
    """The model's test-time probabilities as NumPy. Calls the model directly: `predict` would
    trace a new function for every fresh model of a sweep."""
    return np.concatenate([
        keras.ops.convert_to_numpy(model(x[i:i + batch_size], training=False))
        for i in range(0, len(x), batch_size)
    ])


def sweep(methods, train, test, num_classes, seeds, epochs, batch_size=128):
    """Run every method with every seed; returns a list of rows (dicts with `method`)."""
    rows = []
    bar = keras.utils.Progbar(len(methods) * len(seeds), unit_name="run", interval=60)
    for name, method in methods.items():
        for seed in seeds:
            row, _, _ = run(method, train, test, num_classes, seed, epochs, batch_size)
            rows.append({"method": name, **row})
            bar.add(1)
    return rows


def summarize(rows, columns=("accuracy", "nll", "ece", "matched_accuracy", "top_class_share")):
    """Per method, in order of first appearance: the mean and sample standard deviation over
    seeds of each column. Returns a list of dicts with `method`, `seeds`, `<col>` and `<col>_std`."""
    by_method = {}
    for row in rows:
        by_method.setdefault(row["method"], []).append(row)
    summary = []
    for name, runs in by_method.items():
        entry = {"method": name, "seeds": len(runs)}
        for column in columns:
            values = np.array([run[column] for run in runs], dtype="float64")
            entry[column] = float(values.mean())
            entry[column + "_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        summary.append(entry)
    return summary


def markdown_table(summary, columns=("accuracy", "nll", "ece", "matched_accuracy", "top_class_share")):
    """A Markdown table of `summarize`'s output, each cell `mean ± std`."""
    lines = [
        "| method | " + " | ".join(columns) + " | seeds |",
        "|---" * (len(columns) + 2) + "|",
    ]
    for entry in summary:
        cells = [f"{entry[c]:.3f} ± {entry[c + '_std']:.3f}" for c in columns]
        lines.append(f"| {entry['method']} | " + " | ".join(cells) + f" | {entry['seeds']} |")
    return "\n".join(lines)
