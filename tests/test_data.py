"""alllib.data: offline datasets, the tensorflow-datasets path (mocked), and clear failures."""

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


def test_tfds_path_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        x, y = data.load("mnist")
    assert x.shape == (12, 28, 28, 1) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0 and y.shape == (12,)


def test_offline_download_fails_fast_naming_alternatives(monkeypatch, tmp_path):
    pytest.importorskip("tensorflow_datasets")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))  # nothing downloaded here
    monkeypatch.setattr(data, "_online", lambda: False)
    with pytest.raises(data.DatasetUnavailable, match="digits"):
        data.load("fashion_mnist")


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown dataset 'mnist2'.*digits"):
        data.load("mnist2")
    with pytest.raises(ValueError, match="split"):
        data.load("digits", split="validation")
