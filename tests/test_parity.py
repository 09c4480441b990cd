"""Same initial weights, data and noise give the same weights on TensorFlow, JAX and PyTorch."""

import numpy as np
import pytest

from backends import BACKENDS, run

# Six SGD steps in float32; the backends' kernels round differently in the last bits.
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    results = {}
    for backend in BACKENDS:
        path = tmp_path_factory.mktemp(backend) / "weights.npz"
        run(backend, ["tests/parity_worker.py", str(path)])
        with np.load(path) as f:
            results[backend] = [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]
    return results


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_same_weights_as_tensorflow(trained, backend):
    reference, other = trained["tensorflow"], trained[backend]
    assert len(reference) == len(other)
    for a, b in zip(reference, other):
        np.testing.assert_allclose(b, a, **TOLERANCE)


def test_training_moved_the_weights(trained):
    # Guard against a vacuous pass: the compared weights are not the initial ones.
    rng = np.random.default_rng(0)
    initial = [rng.normal(0, 0.5, w.shape) for w in trained["tensorflow"]]
    moved = max(np.abs(a - b).max() for a, b in zip(trained["tensorflow"], initial))
    assert moved > 1e-2
