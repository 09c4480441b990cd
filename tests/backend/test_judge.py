"""The judge network and the measurements made through it, on the backend in KERAS_BACKEND."""

import os

import numpy as np
import pytest

from alllib import data, metrics

pytestmark = pytest.mark.one_backend  # Keras's own fit and predict, then NumPy


@pytest.fixture(scope="module")
def digits():
    return data.load("digits"), data.load("digits", split="test")


@pytest.fixture(scope="module")
def judge(digits):
    (x, y), _ = digits
    return metrics.train_judge(x, y, 10, epochs=30, seed=0)


def test_judge_classifies_digits_and_its_features_order_distances(digits, judge):
    (x, y), (x_test, y_test) = digits
    assert judge.accuracy(x_test, y_test) >= 0.97
    train, test = judge.features(x), judge.features(x_test)
    assert train.shape == (len(x), 128)
    assert abs(metrics.frechet_distance(train, train)) < 1e-4
    rng = np.random.default_rng(0)
    noisy = [
        metrics.frechet_distance(train, judge.features(np.clip(x + s * rng.standard_normal(x.shape), -1, 1).astype("float32")))
        for s in (0.3, 1.0)
    ]
    # another real sample sits closer than heavily corrupted copies of the same images
    assert noisy[0] < noisy[1] and metrics.frechet_distance(train, test) < noisy[1]
    coverage = metrics.class_coverage(judge.probs(x_test))
    assert coverage["classes"] == 10 and coverage["kl_from_uniform"] < 0.05


def test_judge_cache_round_trip(digits, tmp_path):
    (x, y), (x_test, _) = digits
    first = metrics.train_judge(x[:300], y[:300], 10, epochs=1, cache_dir=str(tmp_path))
    [saved] = os.listdir(tmp_path)
    again = metrics.train_judge(x[:300], y[:300], 10, epochs=1, cache_dir=str(tmp_path))
    np.testing.assert_allclose(again.features(x_test[:20]), first.features(x_test[:20]), rtol=1e-5, atol=1e-6)
    metrics.train_judge(x[:300], y[:300], 10, epochs=2, cache_dir=str(tmp_path))  # other settings: new entry
    assert len(os.listdir(tmp_path)) == 2 and saved in os.listdir(tmp_path)


def test_classification_accuracy_score(digits):
    """Real images as the 'generated' set reach the ceiling; labels shuffled against them do not."""
    (x, y), (x_test, y_test) = digits
    real = metrics.classification_accuracy_score(x, y, x_test, y_test, 10, epochs=15)
    shuffled = metrics.classification_accuracy_score(x, np.random.default_rng(0).permutation(y), x_test, y_test, 10, epochs=15)
    assert real > 0.9 and shuffled < 0.3
    with pytest.raises(ValueError, match="`x` must be images"):
        metrics.classification_accuracy_score(x[:, :, :, 0], y, x_test, y_test, 10, epochs=1)


def test_image_scores_measure_the_generator_each_epoch(digits, judge):
    import keras

    import alllib
    from alllib import callbacks, nets

    (x, y), (x_test, _) = digits
    keras.utils.set_random_seed(0)
    cgan = alllib.ConditionalGAN(nets.conditional_dcgan_generator(16, 10, (8, 8, 1), width=8),
                                 nets.conditional_dcgan_discriminator((8, 8, 1), 10, width=8), 16, 10)
    cgan.compile(d_optimizer="adam", g_optimizer="adam", ema_decay=0.9)
    scores = callbacks.ImageScores(judge, x_test, num_samples=100, every=2)
    cgan.fit(x[:256], y[:256], batch_size=64, epochs=4, verbose=0, callbacks=[scores])
    assert [r["epoch"] for r in scores.history] == [2, 4]
    last = scores.history[-1]
    # The same numbers, computed by hand from the same noise and the averaged generator.
    fake = judge.features(cgan.generate(100, noise=scores.noise))
    real = judge.features(x_test[:100])
    assert last["fd"] == pytest.approx(metrics.frechet_distance(real, fake), rel=1e-6)
    assert last["kid"] == pytest.approx(metrics.kernel_distance(real, fake, subset_size=50, subsets=20)[0], rel=1e-6, abs=1e-9)
    assert last["training_fd"] != last["fd"]
    assert last["kid_std"] > 1e-6  # subsets of half the samples differ: a real spread
