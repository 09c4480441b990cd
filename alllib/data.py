"""Datasets for the course, all returned as NumPy arrays `(x, y)`.

- `"fashion_mnist"`, `"mnist"`: 28x28 grayscale images in ten classes, read from the original IDX
  files wherever they already are (see `load`), else from tensorflow-datasets.
- `"cifar10"`: tensorflow-datasets.
- `"digits"`: scikit-learn's 1797 real 8x8 handwritten digits; ships with scikit-learn, so it
  needs no network.
- `"stacked_digits"`: three digits of a split drawn at random, one per channel (8x8x3): the
  Stacked-MNIST mode-collapse benchmark (Metz et al. 2017; Srivastava et al. 2017) built from the
  8x8 digits, with 1,000 modes; `y` is the three-digit number, 100 * first + 10 * second + third.
- `"ring"`: 8 Gaussians on a circle of radius 2, standard deviation 0.02 (VEEGAN's benchmark).
- `"grid"`: 25 Gaussians on a 5x5 grid with spacing 2, standard deviation 0.05.
  For the mixtures, `y` is the index of the mode each point was drawn from.

Images are scaled to [-1, 1] (the range of a tanh generator), shape `(n, height, width, channels)`.
`validation_split` and `labelled_subset` carve class-balanced, seeded pieces out of a split;
`few_label_batches` feeds a few labels and many unlabeled images to `fit` side by side.
"""

import glob
import gzip
import os

import numpy as np

TFDS_DATASETS = ("mnist", "fashion_mnist", "cifar10")
OFFLINE_DATASETS = ("digits", "stacked_digits", "ring", "grid")
DATASETS = TFDS_DATASETS + OFFLINE_DATASETS

# The four files of the original MNIST-style releases, per split: (images, labels).
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Fashion-MNIST's ten classes, in label order (its README).
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
# The subfolder that holds a dataset's IDX files, under ALLLIB_DATA_DIR, under Keras's cache
# (`~/.keras/datasets/`, Fashion-MNIST only: Keras keeps MNIST as one .npz) and under Debian's root.
IDX_FOLDERS = {"fashion_mnist": "fashion-mnist", "mnist": "mnist"}
DEBIAN_ROOT = "/usr/share/datasets"
DEBIAN_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist"}
UNLABELED = -1  # the label of an example a model sees without its class


class DatasetUnavailable(RuntimeError):
    """A dataset that needs a download could not be fetched."""


def load(name, split="train", n=None, seed=0):
    """Load dataset `name` as `(x, y)`.

    Fashion-MNIST (and MNIST) are looked for, in order: the four IDX files in
    `$ALLLIB_DATA_DIR/fashion-mnist/` (`mnist/`); a prepared tensorflow-datasets copy (no download); Keras's cache
    (`~/.keras/datasets/fashion-mnist/`); Debian's `dataset-fashion-mnist` package; then a
    download when online. `source(name)` says which one `load` would use.

    Args:
        name: one of `DATASETS`.
        split: `"train"` or `"test"`. For digits the test split is a fixed 20% of the data;
            for the mixtures it only changes the random draw.
        n: number of examples to keep (the mixtures and stacked digits: to draw; default
            10 000).
        seed: seed for the mixtures, the stacked digits and subsampling.
    """
    _check_name_and_split(name, split)
    if name in ("ring", "grid", "stacked_digits"):
        draw_seed = seed if split == "train" else seed + 1_000_003
        if name == "stacked_digits":
            return _stacked_digits(split, 10_000 if n is None else n, draw_seed)
        return _mixture(name, 10_000 if n is None else n, draw_seed)
    if name == "digits":
        x, y = _digits(split)
    else:
        _, read = _locate(name)
        images, labels = read(split)
        if images.ndim == 3:
            images = images[..., None]
        x, y = images.astype("float32") / 127.5 - 1.0, labels.astype("int32")
    if n is not None and n < len(x):
        keep = np.random.default_rng(seed).choice(len(x), n, replace=False)
        x, y = x[keep], y[keep]
    return x, y


def source(name):
    """Where `load(name)` reads from, in words a notebook can print (no machine paths)."""
    _check_name_and_split(name, "train")
    if name in OFFLINE_DATASETS:
        return {"digits": "scikit-learn (bundled)",
                "stacked_digits": "scikit-learn's digits, stacked"}.get(name, "synthetic")
    return _locate(name)[0]


def validation_split(x, y, fraction=0.1, seed=0):
    """Split `(x, y)` into `(x_train, y_train), (x_val, y_val)`, holding out `fraction` of every
    class, chosen by `seed`. Every choice a notebook makes is made on the held-out part."""
    x, y = _check_pair(x, y)
    if not 0 < fraction < 1:
        raise ValueError(f"`fraction` must be in (0, 1); received {fraction}.")
    classes, counts = np.unique(y, return_counts=True)
    held = _balanced_pick(y, dict(zip(classes, np.round(fraction * counts).astype(int))), seed)
    rest = np.setdiff1d(np.arange(len(y)), held)
    return (x[rest], y[rest]), (x[held], y[held])


def labelled_subset(x, y, n, seed=0):
    """Keep `n` labels, the same number from every class (the first `n % K` classes in a seeded
    order get one more), and return `(x_labelled, y_labelled), (x_rest, y_rest)`: the few-label
    setting, where the rest is used without its labels."""
    x, y = _check_pair(x, y)
    classes, counts = np.unique(y, return_counts=True)
    if not isinstance(n, (int, np.integer)) or not len(classes) <= n <= len(y):
        raise ValueError(
            f"`n` must be an integer from {len(classes)} (one per class) to {len(y)}; received {n!r}."
        )
    quota = np.full(len(classes), n // len(classes))
    quota[np.random.default_rng(seed).permutation(len(classes))[: n % len(classes)]] += 1
    short = classes[quota > counts]
    if len(short):
        raise ValueError(f"`n`={n} needs {quota.max()} examples of each class; classes {short.tolist()} have fewer.")
    picked = _balanced_pick(y, dict(zip(classes, quota)), seed)
    rest = np.setdiff1d(np.arange(len(y)), picked)
    return (x[picked], y[picked]), (x[rest], y[rest])


def few_label_batches(x_labelled, y_labelled, x_unlabeled=None, batch_size=64, seed=0):
    """An endless generator of `(x, y)` batches for `fit(..., steps_per_epoch=...)`: each holds
    `batch_size` labelled examples and, with `x_unlabeled`, `batch_size` unlabeled ones after them
    (label `UNLABELED`). With 100 labels among 60,000 images a shuffled batch would hold a
    labelled example once in ten batches; here every batch has as many of each (Salimans et al.
    2016 feed theirs the same way). Each part is reshuffled whenever it runs out. The arguments
    are checked at the call, not at the first batch."""
    x_labelled, y_labelled = _check_pair(x_labelled, y_labelled)
    if not np.issubdtype(y_labelled.dtype, np.integer) or y_labelled.min() < 0:
        raise ValueError("`y_labelled` must be class indices, integers from 0 (no -1: these are "
                         f"the labelled examples); received {y_labelled.dtype} values from "
                         f"{y_labelled.min()} to {y_labelled.max()}.")
    if x_unlabeled is not None:
        x_unlabeled = np.asarray(x_unlabeled, x_labelled.dtype)
        if len(x_unlabeled) == 0 or x_unlabeled.shape[1:] != x_labelled.shape[1:]:
            raise ValueError(f"`x_unlabeled` must hold at least one example shaped like "
                             f"`x_labelled`'s, {x_labelled.shape[1:]}; received shape "
                             f"{x_unlabeled.shape}.")
    if (not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool)
            or batch_size < 1):
        raise ValueError(f"`batch_size` must be a positive integer; received {batch_size!r}.")
    return _batches(x_labelled, y_labelled, x_unlabeled, batch_size, np.random.default_rng(seed))


def _batches(x_labelled, y_labelled, x_unlabeled, batch_size, rng):
    def indices(n):  # endless: a fresh permutation each pass
        while True:
            yield from rng.permutation(n)

    labelled = indices(len(y_labelled))
    unlabeled = None if x_unlabeled is None else indices(len(x_unlabeled))
    while True:
        picked = [next(labelled) for _ in range(batch_size)]
        x, y = x_labelled[picked], y_labelled[picked].astype("int32")
        if unlabeled is not None:
            x = np.concatenate([x, x_unlabeled[[next(unlabeled) for _ in range(batch_size)]]])
            y = np.concatenate([y, np.full(batch_size, UNLABELED, "int32")])
        yield x, y


def read_idx(path):
    """Read one IDX file (optionally gzipped) as a uint8 array: a big-endian header of a magic
    number (two zero bytes, type 0x08 for unsigned bytes, the number of dimensions), one int32
    per dimension, then the raw values."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as file:
        raw = file.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{os.path.basename(path)} is not an IDX file of unsigned bytes.")
    dims = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", dims, offset=4))
    values = np.frombuffer(raw, np.uint8, offset=4 + 4 * dims)
    if values.size != np.prod(shape):
        raise ValueError(f"{os.path.basename(path)}: header says {shape}, found {values.size} values.")
    return values.reshape(shape)


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


def _check_name_and_split(name, split):
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r} for argument `name`; expected one of {DATASETS}.")
    if split not in ("train", "test"):
        raise ValueError(f"`split` must be 'train' or 'test'; received {split!r}.")


def _check_pair(x, y):
    x, y = np.asarray(x), np.asarray(y).reshape(-1)
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"`x` and `y` must be non-empty and of the same length; received {len(x)} and {len(y)}.")
    return x, y


def _balanced_pick(y, per_class, seed):
    """Indices of `per_class[c]` examples of each class c, drawn by `seed`, in one shuffled order."""
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in per_class.items()]
    return rng.permutation(np.concatenate(picked))


def _locate(name):
    """`(label, read)` for the first place that has `name`; `read(split)` gives uint8 images and
    labels. Raises `DatasetUnavailable` naming the ways to get it when nothing has it."""

    def idx_reader(root):
        folder = root and name in IDX_FOLDERS and os.path.join(root, IDX_FOLDERS[name])
        if folder and _has_idx(folder):
            return lambda split: _read_idx_split(folder, split)
        return None

    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    if reader := idx_reader(os.environ.get("ALLLIB_DATA_DIR")):
        return "ALLLIB_DATA_DIR", reader
    if _tfds_prepared(name):
        return "tensorflow-datasets (prepared copy)", lambda split: _tfds(name, split, download=False)
    if name == "fashion_mnist" and (reader := idx_reader(os.path.join(keras_home, "datasets"))):
        return "Keras dataset cache", reader
    if name in DEBIAN_PACKAGES and (reader := idx_reader(DEBIAN_ROOT)):
        return f"Debian package {DEBIAN_PACKAGES[name]}", reader
    if _online():
        if name == "fashion_mnist":
            return "download (keras.datasets)", _keras_download
        return "download (tensorflow-datasets)", lambda split: _tfds(name, split, download=True)
    raise DatasetUnavailable(_unavailable_message(name))


def _unavailable_message(name):
    ways = [
        "on Colab (online), it downloads by itself",
        f"put the four IDX files ({', '.join(sum(IDX_FILES.values(), ()))}, gzipped or not) in "
        f"a folder {IDX_FOLDERS.get(name, name)}/ and set ALLLIB_DATA_DIR to the folder above it",
    ]
    if name in DEBIAN_PACKAGES:
        ways.insert(1, f"on Debian or Ubuntu: sudo apt-get install {DEBIAN_PACKAGES[name]}")
        ways.insert(2, "elsewhere, once online: python -c 'import keras; keras.datasets.fashion_mnist.load_data()'")
    else:
        ways.insert(1, f"once online: tensorflow-datasets downloads it (tfds.load({name!r}))")
    return (
        f"Dataset {name!r} was not found on this machine and there is no network to fetch it. "
        f"Ways to get it: " + "; ".join(ways) + ". "
        "Or use the offline 8x8 digits instead: alllib.data.load('digits'), or on the command "
        "line --datasets digits."
    )


def _idx_path(folder, stem):
    for candidate in (stem + ".gz", stem):
        if os.path.isfile(os.path.join(folder, candidate)):
            return os.path.join(folder, candidate)
    return None


def _has_idx(folder):
    return all(_idx_path(folder, stem) for pair in IDX_FILES.values() for stem in pair)


def _read_idx_split(folder, split):
    images, labels = (read_idx(_idx_path(folder, stem)) for stem in IDX_FILES[split])
    if len(images) != len(labels):
        raise ValueError(f"The {split} IDX files disagree: {len(images)} images, {len(labels)} labels.")
    return images, labels


def _keras_download(split):
    import keras

    train, test = keras.datasets.fashion_mnist.load_data()
    return train if split == "train" else test


def _digits(split):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype("float32") / 8.0 - 1.0)[..., None]  # pixel values are 0..16
    y = digits.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(x))  # a fixed 80/20 split
    cut = int(0.8 * len(x))
    keep = order[:cut] if split == "train" else order[cut:]
    return x[keep], y[keep]


def _stacked_digits(split, n, seed):
    """`n` stacks of three digits of `split`, each drawn uniformly with replacement."""
    x, y = _digits(split)
    picks = np.random.default_rng(seed).integers(0, len(x), (n, 3))
    return np.concatenate([x[picks[:, c]] for c in range(3)], axis=-1), (
        y[picks] @ np.array([100, 10, 1])).astype("int32")


def _tfds_prepared(name):
    """Has tensorflow-datasets already prepared `name` here? A look at its folder
    (`$TFDS_DATA_DIR` or `~/tensorflow_datasets`), so no slow import when it has not."""
    root = os.environ.get("TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))
    return bool(glob.glob(os.path.join(root, name, "*", "dataset_info.json")))


def _tfds(name, split, download):
    import tensorflow_datasets as tfds

    dataset = tfds.load(name, split=split, as_supervised=True, download=download)
    batches = list(tfds.as_numpy(dataset.batch(10_000)))
    return np.concatenate([i for i, _ in batches]), np.concatenate([l for _, l in batches])


def _online(host="storage.googleapis.com", port=443, timeout=3.0):
    """Can we open a connection to where the downloads come from?"""
    import socket

    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False
