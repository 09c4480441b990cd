"""Small matplotlib helpers: samples (points or images) and training curves."""

import matplotlib.pyplot as plt
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
    """Plot training curves, one panel per group of log keys (a `History` or its dict)."""
    logs = getattr(history, "history", history)
    groups = [[k for k in group if k in logs] for group in groups]
    groups = [g for g in groups if g]
    if axes is None:
        _, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.2), squeeze=False)
        axes = axes[0]
    for ax, group in zip(axes, groups):
        for key in group:
            ax.plot(np.arange(1, len(logs[key]) + 1), logs[key], label=key)
        ax.set_xlabel("epoch")
        ax.legend()
    return axes


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
