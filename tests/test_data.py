"""alllib.data: offline datasets, IDX files found where they lie, the tensorflow-datasets path
(mocked), class-balanced splits, and clear failures."""

import gzip
import os

import numpy as np
import pytest

from alllib import data


def test_digits_offline_scaled_and_split():
    x_train, y_train = data.load("digits")
    x_test, y_test = data.load("digits", split="test")
    assert x_train.shape[1:] == (8, 8, 1) and x_train.dtype == np.float32
    assert len(x_train) + len(x_test) == 1797 and len(x_test) == 360
    assert x_train.min() == -1.0 and x_train.max() == 1.0
    assert set(np.unique(y_train)) == set(range(10))
    assert not set(map(bytes, x_train)) & set(map(bytes, x_test))  # disjoint splits


def test_stacked_digits_stack_three_digits_of_the_split():
    x, y = data.load("stacked_digits", n=3000, seed=1)
    digits, labels = data.load("digits")
    assert x.shape == (3000, 8, 8, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert 900 < len(np.unique(y)) <= 1000 and y.min() >= 0 and y.max() <= 999
    for c, place in enumerate((100, 10, 1)):  # each channel is a digit image with its label
        lookup = {bytes(image): label for image, label in zip(digits, labels)}
        assert all(lookup[bytes(x[i, ..., c:c + 1])] == y[i] // place % 10 for i in range(50))
    assert np.array_equal(x, data.load("stacked_digits", n=3000, seed=1)[0])
    test_x, _ = data.load("stacked_digits", split="test", n=100, seed=1)
    test_digits = set(map(bytes, data.load("digits", split="test")[0]))
    assert all(bytes(test_x[i, ..., c:c + 1]) in test_digits for i in range(100) for c in range(3))
    assert data.source("stacked_digits") == "scikit-learn's digits, stacked"


@pytest.mark.parametrize("name, modes, std", [("ring", 8, 0.02), ("grid", 25, 0.05)])
def test_mixtures(name, modes, std):
    x, y = data.load(name, n=20_000, seed=3)
    centres, got_std = data.mixture_modes(name)
    assert x.shape == (20_000, 2) and len(centres) == modes and got_std == std
    assert set(np.unique(y)) == set(range(modes))
    np.testing.assert_allclose((x - centres[y]).std(), std, rtol=0.05)
    assert np.array_equal(x, data.load(name, n=20_000, seed=3)[0])
    assert not np.array_equal(x[:100], data.load(name, n=100, seed=3, split="test")[0])


def test_ring_geometry():
    centres, _ = data.mixture_modes("ring")
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 2.0, rtol=1e-6)
    grid, _ = data.mixture_modes("grid")
    assert sorted(set(grid[:, 0].tolist())) == [-4, -2, 0, 2, 4]


def test_tfds_path_with_mock_data(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(data, "_tfds_prepared", lambda name: True)  # mock_data fakes the copy
    with tfds.testing.mock_data(num_examples=12):
        x, y = data.load("mnist")
    assert x.shape == (12, 28, 28, 1) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0 and y.shape == (12,)


@pytest.fixture
def nowhere(monkeypatch, tmp_path):
    """A machine with no copy of any dataset and no network."""
    monkeypatch.delenv("ALLLIB_DATA_DIR", raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(data, "DEBIAN_ROOT", str(tmp_path / "debian"))
    monkeypatch.setattr(data, "_online", lambda: False)
    return tmp_path


def test_offline_download_fails_fast_naming_alternatives(nowhere):
    with pytest.raises(data.DatasetUnavailable, match="digits") as error:
        data.load("fashion_mnist")
    for way in ("Colab", "apt-get install dataset-fashion-mnist", "fashion_mnist.load_data", "ALLLIB_DATA_DIR"):
        assert way in str(error.value)
    with pytest.raises(data.DatasetUnavailable, match="tfds.load"):
        data.source("cifar10")


def write_idx(path, array, compress):
    """An IDX file as the original releases write it: magic 0x0000 0x08 ndim, int32 dims, bytes."""
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    payload = header + np.ascontiguousarray(array, np.uint8).tobytes()
    if compress:
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def write_release(folder, n_train=20, n_test=10, compress=True):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        for stem, array in zip(data.IDX_FILES[split], (images, labels)):
            write_idx(folder / (stem + (".gz" if compress else "")), array, compress)
        arrays[split] = images, labels
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_in_alllib_data_dir(nowhere, monkeypatch, compress):
    arrays = write_release(nowhere / "mine" / "fashion-mnist", compress=compress)
    monkeypatch.setenv("ALLLIB_DATA_DIR", str(nowhere / "mine"))
    assert data.source("fashion_mnist") == "ALLLIB_DATA_DIR"
    for split in ("train", "test"):
        x, y = data.load("fashion_mnist", split=split)
        images, labels = arrays[split]
        assert x.shape == (len(images), 28, 28, 1) and x.dtype == np.float32
        np.testing.assert_allclose(x[..., 0], images / 127.5 - 1.0, atol=1e-6)
        np.testing.assert_array_equal(y, labels)
        assert y.dtype == np.int32
    # a Fashion-MNIST folder never stands in for MNIST
    with pytest.raises(data.DatasetUnavailable):
        data.load("mnist")


def test_search_order(nowhere, monkeypatch):
    """ALLLIB_DATA_DIR, then a prepared tensorflow-datasets copy, then Keras's cache, then Debian."""
    write_release(nowhere / "debian" / "fashion-mnist")
    assert data.source("fashion_mnist") == "Debian package dataset-fashion-mnist"
    write_release(nowhere / "keras" / "datasets" / "fashion-mnist", n_train=30)
    assert data.source("fashion_mnist") == "Keras dataset cache"
    assert len(data.load("fashion_mnist")[0]) == 30
    prepared = nowhere / "tfds" / "fashion_mnist" / "3.0.1"
    prepared.mkdir(parents=True)
    (prepared / "dataset_info.json").write_text("{}")
    assert data.source("fashion_mnist").startswith("tensorflow-datasets")
    write_release(nowhere / "mine" / "fashion-mnist")
    monkeypatch.setenv("ALLLIB_DATA_DIR", str(nowhere / "mine"))
    assert data.source("fashion_mnist") == "ALLLIB_DATA_DIR"


def test_incomplete_folder_is_skipped_and_bad_files_are_named(nowhere, monkeypatch):
    folder = nowhere / "mine" / "fashion-mnist"
    write_release(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("ALLLIB_DATA_DIR", str(nowhere / "mine"))
    with pytest.raises(data.DatasetUnavailable):
        data.load("fashion_mnist")
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not an idx file"))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz is not an IDX file"):
        data.load("fashion_mnist", split="test")
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8), compress=True)
    with pytest.raises(ValueError, match="10 images, 3 labels"):
        data.load("fashion_mnist", split="test")


@pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist"),
    reason="Debian package dataset-fashion-mnist not installed (.ci/run installs it)",
)
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv("ALLLIB_DATA_DIR", raising=False)
    x_train, y_train = data.load("fashion_mnist")
    x_test, y_test = data.load("fashion_mnist", split="test")
    assert x_train.shape == (60_000, 28, 28, 1) and x_test.shape == (10_000, 28, 28, 1)
    assert x_train.min() == -1.0 and x_train.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test), [1000] * 10)


def test_validation_split_is_balanced_disjoint_and_seeded():
    y = np.repeat(np.arange(4), [50, 30, 20, 100])
    x = np.arange(len(y)) * 10  # each x names its row
    (x_train, y_train), (x_val, y_val) = data.validation_split(x, y, fraction=0.1, seed=1)
    np.testing.assert_array_equal(np.bincount(y_val), [5, 3, 2, 10])
    assert len(x_train) + len(x_val) == len(y)
    assert not set(x_train) & set(x_val)
    np.testing.assert_array_equal(y[x_val // 10], y_val)  # pairs stay together
    assert np.array_equal(x_val, data.validation_split(x, y, 0.1, seed=1)[1][0])
    assert not np.array_equal(np.sort(x_val), np.sort(data.validation_split(x, y, 0.1, seed=2)[1][0]))
    with pytest.raises(ValueError, match="fraction"):
        data.validation_split(x, y, fraction=1.0)
    with pytest.raises(ValueError, match="same length"):
        data.validation_split(x[:-1], y)


def test_labelled_subset_takes_the_same_number_per_class():
    y = np.repeat(np.arange(10), 30)
    x = np.arange(len(y))
    (x_few, y_few), (x_rest, y_rest) = data.labelled_subset(x, y, 100, seed=0)
    np.testing.assert_array_equal(np.bincount(y_few), [10] * 10)
    assert len(x_rest) == 200 and not set(x_few) & set(x_rest)
    counts = np.bincount(data.labelled_subset(x, y, 23, seed=4)[0][1])
    assert sorted(counts) == [2] * 7 + [3] * 3
    with pytest.raises(ValueError, match="`n` must be an integer from 10"):
        data.labelled_subset(x, y, 5)
    with pytest.raises(ValueError, match="classes \\[0\\] have fewer"):
        data.labelled_subset(x[5:], y[5:], 260)  # class 0 keeps 25 < 26


def few_label_sets():
    """12 labelled and 30 unlabeled examples of shape (2,), each naming itself: a labelled one's
    first value is its row, an unlabeled one's 100 + its row; the second value is its label."""
    y_labelled = (np.arange(12) % 3).astype("int64")
    x_labelled = np.stack([np.arange(12), y_labelled], axis=1).astype("float32")
    x_unlabeled = np.stack([100 + np.arange(30), np.full(30, -5)], axis=1).astype("float32")
    return x_labelled, y_labelled, x_unlabeled


def test_few_label_batches_put_as_many_unlabeled_examples_after_the_labelled_ones():
    x_labelled, y_labelled, x_unlabeled = few_label_sets()
    batches = data.few_label_batches(x_labelled, y_labelled, x_unlabeled, batch_size=4, seed=0)
    cycles, unlabeled_rows = [], []
    for _ in range(2):  # two passes over the labels: 12 / 4 batches each
        rows = []
        for _ in range(3):
            x, y = next(batches)
            assert x.shape == (8, 2) and y.shape == (8,) and y.dtype == np.int32
            labelled, unlabeled = x[:4], x[4:]
            assert set(labelled[:, 0]) <= set(range(12))  # from the labelled set only
            np.testing.assert_array_equal(y[:4], y_labelled[labelled[:, 0].astype(int)])
            np.testing.assert_array_equal(y[4:], [data.UNLABELED] * 4)
            assert set(unlabeled[:, 0]) <= set(range(100, 130))
            rows += labelled[:, 0].astype(int).tolist()
            unlabeled_rows += (unlabeled[:, 0] - 100).astype(int).tolist()
        assert sorted(rows) == list(range(12))  # every label once per pass
        cycles.append(rows)
    assert cycles[0] != cycles[1]  # reshuffled for the second pass
    assert len(set(unlabeled_rows)) == 24  # 24 of the 30, none twice within a pass
    again = data.few_label_batches(x_labelled, y_labelled, x_unlabeled, batch_size=4, seed=0)
    np.testing.assert_array_equal(next(again)[0][:4, 0], cycles[0][:4])  # seeded
    other = data.few_label_batches(x_labelled, y_labelled, x_unlabeled, batch_size=12, seed=1)
    assert next(other)[0][:12, 0].astype(int).tolist() != cycles[0]


def test_few_label_batches_without_unlabeled_examples_hold_labelled_ones_only():
    x_labelled, y_labelled, _ = few_label_sets()
    batches = data.few_label_batches(x_labelled, y_labelled, batch_size=5, seed=0)
    rows = []
    for _ in range(12):  # five passes over the 12
        x, y = next(batches)
        assert x.shape == (5, 2) and (y >= 0).all()
        np.testing.assert_array_equal(y, y_labelled[x[:, 0].astype(int)])
        rows += x[:, 0].astype(int).tolist()
    for start in range(0, 60, 12):
        assert sorted(rows[start:start + 12]) == list(range(12))


def test_few_label_batches_bad_arguments():
    x_labelled, y_labelled, x_unlabeled = few_label_sets()
    # at the call, before any batch is drawn (not inside `fit`)
    for batch_size in (0, -4, 2.5, "4", None, True):
        with pytest.raises(ValueError, match="`batch_size` must be a positive integer"):
            data.few_label_batches(x_labelled, y_labelled, x_unlabeled, batch_size)
    with pytest.raises(ValueError, match=r"`x_unlabeled` must hold at least one example shaped "
                                         r"like `x_labelled`'s, \(2,\); received shape \(30, 3\)"):
        data.few_label_batches(x_labelled, y_labelled, np.zeros((30, 3)), 4)
    with pytest.raises(ValueError, match=r"received shape \(0, 2\)"):  # would never yield
        data.few_label_batches(x_labelled, y_labelled, np.zeros((0, 2)), 4)
    for labels in (y_labelled + 0.7, np.where(y_labelled == 0, -1, y_labelled)):
        with pytest.raises(ValueError, match="`y_labelled` must be class indices"):
            data.few_label_batches(x_labelled, labels, x_unlabeled, 4)
    with pytest.raises(ValueError, match="`x` and `y` must be non-empty and of the same length; "
                                         "received 12 and 11"):
        data.few_label_batches(x_labelled, y_labelled[:-1], x_unlabeled, 4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown dataset 'mnist2'.*digits"):
        data.load("mnist2")
    with pytest.raises(ValueError, match="split"):
        data.load("digits", split="validation")
