"""Small matplotlib helpers: samples (points or images), training curves, reliability diagrams,
a 2-D discriminator's value surface."""

import matplotlib.pyplot as plt
from matplotlib.patches import Patch
import numpy as np


def show_samples(samples, ax=None, title=None, reference=None, max_images=64):
    """Draw 2-D points as a scatter (over `reference` points in grey) or images as a grid."""
    samples = np.asarray(samples)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    if samples.ndim == 2 and samples.shape[1] == 2:
        if reference is not None:
            ax.scatter(*np.asarray(reference).T, s=2, c="lightgrey", label="real")
        ax.scatter(*samples.T, s=2, c="tab:blue", alpha=0.5, label="generated")
        ax.set_aspect("equal")
    else:
        ax.imshow(image_grid(samples[:max_images]), cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
    if title:
        ax.set_title(title)
    return ax


def image_grid(images, columns=None):
    """Tile `(n, h, w[, c])` images in [-1, 1] into one `(H, W[, c])` array in [0, 1]."""
    images = np.asarray(images, dtype="float32")
    if images.ndim == 3:
        images = images[..., None]
    n, h, w, c = images.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    grid = np.ones((rows * (h + 1) - 1, columns * (w + 1) - 1, c), dtype="float32")
    for i, image in enumerate(np.clip((images + 1) / 2, 0, 1)):
        r, col = divmod(i, columns)
        grid[r * (h + 1) : r * (h + 1) + h, col * (w + 1) : col * (w + 1) + w] = image
    return grid[..., 0] if c == 1 else grid


def show_history(history, groups=(("d_loss", "g_loss"), ("d_real", "d_fake")), axes=None):
    """Plot training curves, one panel per group of log keys.

    `history` is a Keras `History` (or its dict), plotted per epoch, or a
    `callbacks.StepHistory`, plotted per step.
    """
    if hasattr(history, "steps"):
        logs, x, unit = history.values, np.asarray(history.steps), "step"
    else:
        logs, x, unit = getattr(history, "history", history), None, "epoch"
    groups = [[k for k in group if k in logs] for group in groups]
    groups = [g for g in groups if g]
    if axes is None:
        _, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.0), squeeze=False)
        axes = axes[0]
    for ax, group in zip(axes, groups):
        for key in group:
            ax.plot(np.arange(1, len(logs[key]) + 1) if x is None else x, logs[key], label=key)
        ax.set_xlabel(unit)
        ax.legend()
    return axes


def show_image_scores(records, axes=None):
    """FD and KID over epochs from `callbacks.ImageScores.history`: the generator's averaged
    weights (solid) and, when there is an average, its own training weights (dashed)."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(8.4, 3.0))
    epochs = [r["epoch"] for r in records]
    for ax, key, label in zip(axes, ("fd", "kid"), ("Frechet distance", "kernel distance")):
        averaged = "training_" + key in records[0]
        ax.plot(epochs, [r[key] for r in records], label="moving average" if averaged else key)
        if averaged:
            ax.plot(epochs, [r["training_" + key] for r in records], "--",
                    label="training weights")
        values = [r[k] for r in records for k in (key, "training_" + key) if k in r]
        ax.set_yscale("log" if min(values) > 0 else "linear")
        ax.set_xlabel("epoch")
        ax.set_title(f"{label} (judge features)")
        ax.legend()
    return axes


def reliability_diagram(probs, labels, ax=None, title=None, bins=15, min_count=10):
    """Accuracy against confidence per equal-width bin, with the diagonal of perfect calibration
    and the ECE in the title. Each bar is labelled with its number of examples; a bin holding
    fewer than `min_count` is drawn hollow, since its accuracy is mostly noise."""
    from alllib import metrics

    count, confidence, correct = metrics.calibration_bins(probs, labels, bins)
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.6))
    edges = np.linspace(0, 1, bins + 1)
    filled = count > 0
    accuracy = np.divide(correct, count, out=np.zeros(bins), where=filled)
    ax.bar(edges[:-1], accuracy, width=1 / bins, align="edge", edgecolor="black",
           color=["tab:blue" if n >= min_count else "none" for n in count])
    for left, height, n in zip(edges[:-1], accuracy, count):
        if n:
            ax.text(left + 0.5 / bins, min(height, 0.8) + 0.02, f"{n:.0f}", rotation=90,
                    ha="center", va="bottom", fontsize=6)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ece = metrics.expected_calibration_error(probs, labels, bins)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy",
           title=f"{title + ': ' if title else ''}ECE {ece:.3f}")
    handles = [Patch(facecolor=face, edgecolor="black", label=f"accuracy, {n} examples")
               for face, n in (("tab:blue", f">= {min_count}"), ("none", f"< {min_count}"))]
    ax.legend(handles=ax.get_legend_handles_labels()[0] + handles, loc="upper left", fontsize=7)
    return ax


def show_sample_history(snapshots, reference=None, columns=6):
    """A row of sample plots from a `SampleGrid` callback's `(epoch, samples)` snapshots."""
    snapshots = list(snapshots)
    if len(snapshots) > columns:  # keep the first, the last and evenly spaced ones between
        picks = np.linspace(0, len(snapshots) - 1, columns).round().astype(int)
        snapshots = [snapshots[i] for i in picks]
    fig, axes = plt.subplots(1, len(snapshots), figsize=(2.6 * len(snapshots), 2.8), squeeze=False)
    for ax, (epoch, samples) in zip(axes[0], snapshots):
        show_samples(samples, ax=ax, title=f"epoch {epoch}", reference=reference)
    fig.tight_layout()
    return fig


def compare_bars(summary, columns=("accuracy", "nll", "ece")):
    """One panel per column: a bar per method (grouped by dataset) at the mean over seeds,
    with the standard deviation as an error bar. `summary` is `experiments.compare`'s output."""
    datasets = list(dict.fromkeys(e["dataset"] for e in summary))
    methods = list(dict.fromkeys(e["method"] for e in summary))
    width = 0.8 / len(methods)
    fig, axes = plt.subplots(1, len(columns), figsize=(4.5 * len(columns), 3.4), squeeze=False)
    for ax, column in zip(axes[0], columns):
        for j, method in enumerate(methods):
            entries = {e["dataset"]: e for e in summary if e["method"] == method}
            xs = [i + (j - (len(methods) - 1) / 2) * width for i, d in enumerate(datasets)
                  if d in entries]
            ax.bar(xs, [entries[d][column] for d in datasets if d in entries], width,
                   yerr=[entries[d][column + "_std"] for d in datasets if d in entries],
                   capsize=3, label=method)
        ax.set(xticks=range(len(datasets)), xticklabels=datasets, title=column)
        values = np.array([e[column] for e in summary], dtype=float)
        values = values[np.isfinite(values) & (values > 0)]
        if len(values) and values.max() > 20 * values.min():  # one bar would flatten the rest
            ax.set_yscale("log")
            ax.set_title(f"{column} (log scale)")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=len(methods),
               fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def value_surface(gan, real, ax=None, title=None, samples=1000, resolution=150, margin=1.0):
    """A 2-D GAN's discriminator as a map: its score over the plane (probability of "real"
    for logistic losses, the raw score otherwise), with real points (white) and generated ones
    (black) on top. Where the map is flat, the generator gets no direction."""
    import keras

    from alllib import nets

    if nets.scores_depend_on_batch(gan.discriminator):
        raise ValueError(
            "This discriminator has a MinibatchStdDev layer: its score for a point depends on "
            "the rest of the batch, so it has no value surface of its own."
        )
    real = np.asarray(real)
    fake = gan.generate(samples, seed=0, averaged=False)  # the discriminator's own opponent
    low = np.minimum(real.min(0), np.percentile(fake, 1, axis=0)) - margin
    high = np.maximum(real.max(0), np.percentile(fake, 99, axis=0)) + margin
    xs, ys = np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution)
    half = (high - low) / (resolution - 1) / 2  # pixel centres sit on the grid points
    grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2).astype("float32")
    scores = keras.ops.convert_to_numpy(gan.discriminator(grid, training=False)).reshape(-1)
    logistic = gan.loss_fn.logistic
    values = keras.ops.convert_to_numpy(keras.ops.sigmoid(scores)) if logistic else scores
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    image = ax.imshow(values.reshape(resolution, resolution), origin="lower", cmap="viridis",
                      extent=(low[0] - half[0], high[0] + half[0], low[1] - half[1],
                              high[1] + half[1]), aspect="equal",
                      vmin=0 if logistic else None, vmax=1 if logistic else None)
    ax.scatter(*real.T, s=1, c="white", alpha=0.5)
    ax.scatter(*fake.T, s=1, c="black", alpha=0.5)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, label="D(x)" if logistic else "score")
    if title:
        ax.set_title(title)
    return ax
