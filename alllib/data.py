"""Datasets for the course, all returned as NumPy arrays `(x, y)`.

- `"mnist"`, `"fashion_mnist"`, `"cifar10"`: tensorflow-datasets, images scaled to [-1, 1]
  (the range of a tanh generator), shape `(n, height, width, channels)`.
- `"digits"`: scikit-learn's 1797 real 8x8 handwritten digits; ships with scikit-learn, so it
  needs no network. Scaled to [-1, 1], shape `(n, 8, 8, 1)`.
- `"ring"`: 8 Gaussians on a circle of radius 2, standard deviation 0.02 (VEEGAN's benchmark).
- `"grid"`: 25 Gaussians on a 5x5 grid with spacing 2, standard deviation 0.05.
  For the mixtures, `y` is the index of the mode each point was drawn from.
"""

import numpy as np

TFDS_DATASETS = ("mnist", "fashion_mnist", "cifar10")
OFFLINE_DATASETS = ("digits", "ring", "grid")
DATASETS = TFDS_DATASETS + OFFLINE_DATASETS


class DatasetUnavailable(RuntimeError):
    """A dataset that needs a download could not be fetched."""


def load(name, split="train", n=None, seed=0):
    """Load dataset `name` as `(x, y)`.

    Args:
        name: one of `DATASETS`.
        split: `"train"` or `"test"`. For digits the test split is a fixed 20% of the data;
            for the mixtures it only changes the random draw.
        n: number of examples to keep (the mixtures: to draw; default 10 000).
        seed: seed for the mixtures and for subsampling.
    """
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r} for argument `name`; expected one of {DATASETS}.")
    if split not in ("train", "test"):
        raise ValueError(f"`split` must be 'train' or 'test'; received {split!r}.")
    if name in ("ring", "grid"):
        draw_seed = seed if split == "train" else seed + 1_000_003
        return _mixture(name, 10_000 if n is None else n, draw_seed)
    x, y = _digits(split) if name == "digits" else _tfds(name, split)
    if n is not None and n < len(x):
        keep = np.random.default_rng(seed).choice(len(x), n, replace=False)
        x, y = x[keep], y[keep]
    return x, y


def mixture_modes(name):
    """Centres `(k, 2)` and standard deviation of the `"ring"` or `"grid"` mixture."""
    if name == "ring":
        angles = 2 * np.pi * np.arange(8) / 8
        return np.stack([2 * np.cos(angles), 2 * np.sin(angles)], axis=1).astype("float32"), 0.02
    if name == "grid":
        coords = np.arange(-4, 5, 2, dtype="float32")
        return np.stack(np.meshgrid(coords, coords), axis=-1).reshape(-1, 2), 0.05
    raise ValueError(f"`name` must be 'ring' or 'grid'; received {name!r}.")


def _mixture(name, n, seed):
    centres, std = mixture_modes(name)
    rng = np.random.default_rng(seed)
    y = rng.integers(len(centres), size=n)
    x = centres[y] + std * rng.standard_normal((n, 2)).astype("float32")
    return x.astype("float32"), y.astype("int32")


def _digits(split):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype("float32") / 8.0 - 1.0)[..., None]  # pixel values are 0..16
    y = digits.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(x))  # a fixed 80/20 split
    cut = int(0.8 * len(x))
    keep = order[:cut] if split == "train" else order[cut:]
    return x[keep], y[keep]


def _tfds(name, split):
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DatasetUnavailable(
            f"Dataset {name!r} needs tensorflow-datasets (pip install tensorflow-datasets). "
            f"Offline alternatives: {OFFLINE_DATASETS}."
        ) from error
    try:  # already downloaded (or mocked in tests): no network needed
        dataset = tfds.load(name, split=split, as_supervised=True, download=False)
    except Exception:
        if not _online():
            raise DatasetUnavailable(
                f"Dataset {name!r} is not downloaded and there is no network to fetch it. "
                f"Use an offline dataset instead: {OFFLINE_DATASETS} (e.g. alllib.data.load('digits'))."
            ) from None
        dataset = tfds.load(name, split=split, as_supervised=True)
    batches = list(tfds.as_numpy(dataset.batch(10_000)))
    x = np.concatenate([images for images, _ in batches])
    y = np.concatenate([labels for _, labels in batches])
    return (x.astype("float32") / 127.5 - 1.0), y.astype("int32")


def _online(host="storage.googleapis.com", port=443, timeout=3.0):
    """Can we open a connection to where tensorflow-datasets downloads from?"""
    import socket

    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False
