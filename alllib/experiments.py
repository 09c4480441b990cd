"""Train classifiers under different objectives with several seeds and measure each run.

A method is a plain dict of settings, so a comparison is data: `{"name": {...}, ...}`.
`kind="ce"` trains the predictor alone with cross-entropy (optionally label-smoothed);
`kind="adversarial"` wraps it in an `AdversarialLabelLearner`. Every run of a sweep uses the same
predictor architecture, data, batch size and epochs, and a fresh seed per repetition.

`compare` is the resumable version behind `python -m alllib compare`: it writes every finished
run to disk at once (atomically), skips runs already on disk when restarted, measures each
method's training step time against the cross-entropy step, and draws the summary plots.
"""

import csv
import io
import json
import logging
import os
import time

import keras
import numpy as np

from alllib import callbacks, data, metrics, nets
from alllib.configs import (  # noqa: F401 (public names)
    COMPARE_DATASETS, KINDS, METHOD_NOTES, METHODS, configure,
)
from alllib.label_learner import AdversarialLabelLearner
from alllib.targets import SoftTargets


class ResultsError(ValueError):
    """A results file of `compare` that cannot be read."""


PREDICTORS = {"mlp": nets.mlp_predictor, "conv": nets.conv_predictor}
PREDICTOR_NOTES = {"mlp": "an MLP with two hidden layers of 128 units",
                   "conv": "a convnet of two blocks of two 3x3 convolutions"}


def make_predictor(name, input_shape, num_classes):
    """A method's predictor: `"mlp"` (two hidden layers of 128; every sweep, as it trains on
    Fashion-MNIST in seconds per epoch on a CPU) or `"conv"` (two conv blocks, for final rows
    and GPUs; a few minutes per Fashion-MNIST epoch on 2 CPU cores)."""
    if name not in PREDICTORS:
        raise ValueError(f"Unknown setting predictor={name!r}; expected one of {sorted(PREDICTORS)}.")
    return PREDICTORS[name](input_shape, num_classes)


def settings(method):
    """Every setting of `method` (a dict with `kind`, `"ce"` or by default `"adversarial"`, and
    settings that override that kind's defaults in `KINDS`), defaults filled in."""
    kind = method.get("kind", "adversarial") if isinstance(method, dict) else "adversarial"
    if kind not in KINDS:
        raise ValueError(f"Unknown method kind {kind!r}; expected one of {sorted(KINDS)}.")
    return configure(method, {"kind": kind, **KINDS[kind]}, f"kind {kind!r}", argument="method")


def build(method, input_shape, num_classes, seed, learning_rate=1e-3):
    """The compiled model for `method` (see `settings`) at `seed`."""
    s = settings(method)
    kind = s["kind"]
    keras.utils.set_random_seed(seed)
    predictor = make_predictor(s["predictor"], input_shape, num_classes)
    if kind == "ce":
        predictor.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=s["label_smoothing"]),
            metrics=["accuracy"],  # logged like the learner's, for validation curves
        )
        return predictor
    discriminator = nets.label_discriminator(
        num_classes,
        input_shape=input_shape if s["conditional"] else None,
        spectral_norm=s["spectral_norm"],
        batch_frequencies=s["batch_frequencies"],
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


def run(method, train, test, num_classes, seed, epochs, batch_size=128, callbacks=(),
        validation_data=None):
    """Train `method` once and measure it on `test` (the validation split while choosing).
    `validation_data`, `(x, y)` with integer labels, adds per-epoch validation logs to the
    history (and their time to `seconds_per_epoch`). Returns `(row, model, history)`."""
    (x, y), (x_test, y_test) = train, test
    model = build(method, x.shape[1:], num_classes, seed)
    start = time.perf_counter()
    history = _fit(model, x, y, num_classes, batch_size=batch_size, epochs=epochs, shuffle=True,
                   callbacks=list(callbacks), validation_data=validation_data)
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


def sweep(methods, train, test, num_classes, seeds, epochs, batch_size=128, details=False):
    """Run every method with every seed; returns a list of rows (dicts with `method`). With
    `details`, each row also holds `curve`, the accuracy on `test` after every epoch, and
    `probs`, the final predictions on `test`: sweep on a validation split to choose epochs and
    settings, and keep the test set for the final comparison."""
    rows = []
    bar = callbacks.RunProgress(len(methods) * len(seeds), interval=60)
    for name, method in methods.items():
        for seed in seeds:
            row, model, history = run(method, train, test, num_classes, seed, epochs, batch_size,
                                      validation_data=test if details else None)
            if details:
                row["curve"] = [float(v) for v in history.history["val_accuracy"]]
                row["probs"] = predict_probs(model, test[0])
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
            values = np.array([np.nan if run[column] is None else run[column] for run in runs],
                              dtype="float64")
            entry[column] = float(values.mean())
            entry[column + "_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        summary.append(entry)
    return summary


def markdown_table(summary, columns=("accuracy", "nll", "ece", "matched_accuracy", "top_class_share"),
                   formats=None):
    """A Markdown table of summary entries, each cell `mean ± std` (3 decimals, or the format
    spec `formats[column]`); with a `dataset` column and a step-time column when the entries
    have them (`compare`'s summary). An entry without `<column>_std` (a published number, one
    reference run) shows its value alone, formatted if it is a number; blank if NaN or absent."""
    formats = formats or {}
    with_dataset = any("dataset" in e for e in summary)
    with_ratio = any("step_time_ratio" in e for e in summary)
    header = (["dataset"] if with_dataset else []) + ["method", *columns]
    header += (["step time / CE"] if with_ratio else []) + ["seeds"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for e in summary:
        cells = ([e["dataset"]] if with_dataset else []) + [e["method"]]
        cells += [_cell(e, c, formats.get(c, ".3f")) for c in columns]
        cells += ([f"{e['step_time_ratio']:.2f}x"] if with_ratio else []) + [str(e.get("seeds", ""))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(entry, column, spec):
    value = entry.get(column)
    if value is None:
        return ""
    if column + "_std" in entry:
        return f"{value:{spec}} ± {entry[column + '_std']:{spec}}"
    if isinstance(value, str):
        return value
    return "" if value != value else f"{value:{spec}}"  # NaN: nothing to show


# -- step cost -------------------------------------------------------------------------------


def step_times(methods, x, y, num_classes, batch_size=128, steps=100, repeats=3,
               on_device=False):
    """Seconds per training step of each method on the same batch, in this process.

    Each method's model is built once and warmed up (tracing, compilation); then the methods
    are timed in turn, `repeats` rounds interleaved, each a `fit` over `steps` copies of one
    batch. `on_device=True` hands `fit` the batch already converted to a backend tensor (on the
    GPU, if there is one) instead of NumPy, so that no step copies it from the host. Returns
    `{name: array of seconds per step, one per repeat}`.
    """
    # Every fit after the first hands the same model a fresh iterator, and TensorFlow warns
    # about retracing each time; the warm-up absorbs the tracing, so the warning is noise here.
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        return _step_times(methods, x, y, num_classes, batch_size, steps, repeats, on_device)
    finally:
        tf_logger.setLevel(level)


def _step_times(methods, x, y, num_classes, batch_size, steps, repeats, on_device):
    batch = np.arange(batch_size) % len(x)
    sides = {}
    for name, method in methods.items():
        model = build(method, x.shape[1:], num_classes, seed=0)
        labels = y[batch]
        if not isinstance(model, AdversarialLabelLearner):
            labels = keras.utils.to_categorical(labels, num_classes)
        if on_device:
            one = device_batches((x[batch][None], labels[None]))
            fit = lambda n, model=model, one=one: model.fit(one(repeat=n), verbose=0)
        else:
            xs = np.repeat(x[batch][None], steps, 0).reshape((-1,) + x.shape[1:])
            ys = np.repeat(labels[None], steps, 0).reshape((-1,) + labels.shape[1:])
            fit = lambda n, model=model, xs=xs, ys=ys: model.fit(
                xs[: n * batch_size], ys[: n * batch_size], batch_size=batch_size,
                shuffle=False, verbose=0)
        fit(3)  # warm-up: tracing and compilation
        sides[name] = lambda fit=fit: fit(steps)
    seconds = interleaved_times(sides, repeats, warm_up=False)
    return {name: t / steps for name, t in seconds.items()}


def device_batches(batches):
    """A `fit` input of batches already on the accelerator: `batches` (an array, or a tuple of
    them, with one batch per index of the first axis) is converted to backend tensors once, and
    `device_batches(batches)(repeat=1)` is a fresh generator of those batches in order, `repeat`
    times over. With NumPy input Keras copies every batch from the host, and on PyTorch it waits
    for each copy; benchmarks use this to time the step alone."""
    if not isinstance(batches, tuple):
        batches = (batches,)  # Keras reads a generator's tuples as (x,), (x, y) or (x, y, w)
    tensors = keras.tree.map_structure(keras.ops.convert_to_tensor, batches)
    count = len(batches[0])

    def generator(repeat=1):
        for _ in range(repeat):
            for i in range(count):
                yield keras.tree.map_structure(lambda t: t[i], tensors)

    return generator


def interleaved_times(sides, repeats, warm_up=True):
    """The seconds of each of `sides` (name -> function), timed in this process: each run once
    first to warm up (unless `warm_up=False`), then `repeats` rounds of all sides in turn, so
    that a noisy moment on a shared machine hits every side alike. Returns `{name: array of
    seconds, one per repeat}`."""
    if warm_up:
        for run in sides.values():
            run()
    times = {name: [] for name in sides}
    for _ in range(repeats):
        for name, run in sides.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: np.array(t) for name, t in times.items()}


def rate(seconds, steps=1):
    """"median (slowest-fastest)" steps per second over repeats that took `seconds` each."""
    per_second = steps / np.asarray(seconds)
    return (f"{np.median(per_second):.1f} ({per_second.min():.1f}-{per_second.max():.1f}) "
            "steps/s")


def _fit(model, x, y, num_classes, validation_data=None, **fit_kwargs):
    """`fit` with integer labels for the learner, one-hot ones for a cross-entropy model."""
    if not isinstance(model, AdversarialLabelLearner):
        y = keras.utils.to_categorical(y, num_classes)
        if validation_data is not None:
            validation_data = (validation_data[0],
                               keras.utils.to_categorical(validation_data[1], num_classes))
    return model.fit(x, y, verbose=0, validation_data=validation_data, **fit_kwargs)


# -- the resumable comparison ------------------------------------------------------------------

RUN_COLUMNS = (
    "dataset", "method", "settings", "seed", "epochs", "batch_size", "backend", "accuracy", "nll", "ece",
    "matched_accuracy", "top_class_share", "classes_predicted", "d_acc", "seconds_per_epoch",
)
SUMMARY_COLUMNS = ("accuracy", "nll", "ece", "seconds_per_epoch")


def compare(
    datasets=("digits",),
    methods=None,
    seeds=(0, 1, 2),
    epochs=30,
    batch_size=128,
    out="results/compare",
    plots=True,
    verbose=True,
):
    """Run every (dataset, method, seed) not already in `out/runs.json`; return the summary.

    Files in `out`: `runs.json` and `runs.csv` (one row per run, rewritten atomically after
    each run and once more at the end, so a killed sweep leaves only whole rows),
    `step_times.json` (seconds per step and the ratio to cross-entropy, per dataset, backend
    and batch size), `probs/` (test probabilities per run, for reliability diagrams),
    `summary.md`, and with `plots`, `comparison.png` and `reliability_<dataset>.png`. A run
    counts as done when its dataset, method name and settings, seed, epochs, batch size and
    backend all match.
    """
    methods = _select(methods or list(METHODS), METHODS, "method")
    datasets = _select(list(datasets), COMPARE_DATASETS, "dataset")
    seeds = list(dict.fromkeys(int(seed) for seed in seeds))
    backend = keras.backend.backend()
    if os.path.exists(out) and not os.path.isdir(out):
        raise ResultsError(f"The output folder {out!r} is an existing file; choose a folder.")
    rows = _read_json(os.path.join(out, "runs.json"), [])
    timings = _read_json(os.path.join(out, "step_times.json"), {})
    config = dict(epochs=epochs, batch_size=batch_size, backend=backend)
    try:
        done = {_run_key(r) for r in rows}
    except (KeyError, TypeError, ValueError) as error:
        raise ResultsError(f"{os.path.join(out, 'runs.json')} has a malformed row ({error!r}); "
                         "delete the file or choose another output folder.") from error
    wanted = [dict(dataset=d, method=m, settings=_settings(m), seed=s, **config)
              for d in datasets for m in methods for s in seeds]
    todo = [w for w in wanted if _run_key(w) not in done]
    # Everything that can fail before the first run fails here, with the folder untouched.
    for dataset in datasets:
        data.source(dataset)  # raises DatasetUnavailable, naming the ways to get it
    try:
        os.makedirs(os.path.join(out, "probs"), exist_ok=True)
        _atomic_write(os.path.join(out, ".write_test"), "")
        os.remove(os.path.join(out, ".write_test"))
    except OSError as error:
        raise ResultsError(f"Cannot write to the output folder {out!r} ({error.strerror}); "
                           "choose another.") from error
    if verbose:
        print(f"{len(todo)} runs to do, {len(wanted) - len(todo)} already in {out}")
    bar = callbacks.RunProgress(len(todo)) if verbose and todo else None
    for dataset in datasets:
        pending = [w for w in todo if w["dataset"] == dataset]
        timing = timings.setdefault(_timing_key(dataset, backend, batch_size),
                                    {"seconds": {}, "ratio_to_ce": {}})
        untimed = [m for m in methods if m not in timing["ratio_to_ce"]]
        if not pending and not untimed:
            continue
        train, test = data.load(dataset), data.load(dataset, split="test")
        num_classes = int(train[1].max()) + 1
        if untimed:
            # CE is the reference and is timed again with them, in this process.
            seconds = {m: float(np.median(t)) for m, t in step_times(
                {m: METHODS[m] for m in ["ce", *untimed]}, *train, num_classes, batch_size).items()}
            for method in untimed:
                timing["seconds"][method] = seconds[method]
                timing["ratio_to_ce"][method] = seconds[method] / seconds["ce"]
            _write_json(os.path.join(out, "step_times.json"), timings)
        for want in pending:
            row, model, _ = run(METHODS[want["method"]], train, test, num_classes, want["seed"],
                                epochs, batch_size)
            np.save(probs_path(out, **want), predict_probs(model, test[0]).astype("float32"))
            rows.append({**want, **row})
            _write_rows(out, rows)
            if bar:
                bar.add(1)
    _write_rows(out, rows)  # also repairs a CSV left behind its JSON by a kill between the two
    wanted_keys = {_run_key(w) for w in wanted}
    selected = [r for r in rows if _run_key(r) in wanted_keys]
    summary = []
    for dataset in datasets:
        ratios = timings.get(_timing_key(dataset, backend, batch_size), {}).get("ratio_to_ce", {})
        for entry in summarize([r for r in selected if r["dataset"] == dataset], SUMMARY_COLUMNS):
            summary.append({"dataset": dataset, **entry,
                            "step_time_ratio": ratios.get(entry["method"], float("nan"))})
    text = markdown_table(summary, SUMMARY_COLUMNS) + "\n\n" + compare_legend(methods, seeds, datasets)
    _atomic_write(os.path.join(out, "summary.md"), text + "\n")
    if plots:
        _plot(summary, out, datasets, methods, seeds[0], config)
    return summary


def compare_legend(methods, seeds, datasets=("digits",)):
    """What `compare`'s table means, in a few Markdown lines."""
    digits = (" The digits test set has 360 images, so accuracy moves in steps of 0.003 and can "
              "tie exactly across seeds while NLL and ECE move." if "digits" in datasets else "")
    predictors = {m: PREDICTOR_NOTES[settings(METHODS[m])["predictor"]] for m in methods}
    if len(set(predictors.values())) == 1:
        predictor_line = f"- Every method trains the same predictor, {predictors[methods[0]]}."
    else:
        predictor_line = "- Predictors: " + "; ".join(f"`{m}`: {p}" for m, p in predictors.items()) + "."
    lines = [f"- `{m}`: {METHOD_NOTES[m]}" for m in methods] + [
        predictor_line,
        f"- Each cell is the mean ± the sample standard deviation over {len(seeds)} seeds, which "
        f"change the initialisation and the data order.{digits}",
        "- `seconds_per_epoch` is wall time; `step time / CE` is each method's training step "
        "time over cross-entropy's, measured side by side in one process.",
        "- Notebook 05 compares the candidates of notebook 04 on Fashion-MNIST's test set, each "
        "run keeping its best epoch on a validation split, so its numbers differ from this "
        "table's.",
    ]
    return "\n".join(lines)


def probs_path(out, dataset, method, seed, epochs, batch_size, backend, **_):
    """Where `compare` keeps one run's test probabilities."""
    name = f"{dataset}-{method}-seed{seed}-epochs{epochs}-batch{batch_size}-{backend}.npy"
    return os.path.join(out, "probs", name)


# Bumped when a stored run's numbers would mean something else (2: NLL floored at float32's
# smallest normal instead of 1e-7), so `compare` never resumes with rows of another kind.
RESULTS_FORMAT = 2


def _timing_key(dataset, backend, batch_size):
    return f"{dataset}/{backend}/batch{batch_size}/format{RESULTS_FORMAT}"


def _settings(method):
    """The key of a method's runs: every setting, defaults included (so a changed default, such
    as the predictor, is a different run), and the results format."""
    return json.dumps({**settings(METHODS[method]), "results_format": RESULTS_FORMAT},
                      sort_keys=True)


def _run_key(row):
    return (row["dataset"], row["method"], row["settings"], int(row["seed"]), int(row["epochs"]),
            int(row["batch_size"]), row["backend"])


def _select(names, valid, what):
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"Unknown {what} {unknown[0]!r}; choose from: {', '.join(valid)}.")
    return list(dict.fromkeys(names))


def _plot(summary, out, datasets, methods, seed, config):
    import matplotlib.pyplot as plt

    from alllib import plots

    fig = plots.compare_bars(summary, ("accuracy", "nll", "ece"))
    fig.savefig(os.path.join(out, "comparison.png"), dpi=110, bbox_inches="tight")
    plt.close(fig)
    for dataset in datasets:
        fig = reliability_figure(out, dataset, methods, seed, **config)
        fig.savefig(os.path.join(out, f"reliability_{dataset}.png"), dpi=110, bbox_inches="tight")
        plt.close(fig)


def reliability_figure(out, dataset, methods, seed, epochs, batch_size=128, backend=None):
    """One reliability diagram per method, for the runs of `compare` in `out` at this seed,
    epochs, batch size and backend (this process's by default); a missing run is left blank."""
    import matplotlib.pyplot as plt

    from alllib import plots

    backend = backend or keras.backend.backend()
    _, labels = data.load(dataset, split="test")
    fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 3.4), squeeze=False)
    for ax, method in zip(axes[0], methods):
        path = probs_path(out, dataset, method, seed, epochs, batch_size, backend)
        if os.path.exists(path):
            plots.reliability_diagram(np.load(path), labels, ax=ax, title=method)
    fig.suptitle(dataset)
    fig.tight_layout()
    return fig


def _write_rows(out, rows):
    _write_json(os.path.join(out, "runs.json"), rows)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=RUN_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write(os.path.join(out, "runs.csv"), table.getvalue())


def _write_json(path, value):
    """Strict JSON: a missing number (NaN, such as cross-entropy's `d_acc`) is written as null."""
    _atomic_write(path, json.dumps(_nan_to_none(value), indent=1, allow_nan=False))


def _nan_to_none(value):
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return None if isinstance(value, float) and not np.isfinite(value) else value


def _atomic_write(path, text):
    """Write `text` to `path` so that a killed run leaves the old file or the new one."""
    with open(path + ".tmp", "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def _read_json(path, default):
    if not os.path.exists(path):
        return default
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as error:
        raise ResultsError(f"{path} is not valid JSON ({error}); delete it or choose another "
                         "output folder.") from error
