"""Measurements used across the course."""

import numpy as np


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
