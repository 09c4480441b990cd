"""VEEGAN mode counting, class coverage, the distances between feature sets, and probes of frozen
features (`probe`, `layer_outputs`)."""

import numpy as np
import pytest

from alllib import data, metrics, nets


def test_real_data_covers_every_mode_with_high_quality():
    for name in ("ring", "grid"):
        x, _ = data.load(name, n=2500)
        centres, std = data.mixture_modes(name)
        result = metrics.mode_coverage(x, centres, std)
        assert result["modes"] == len(centres)
        assert result["high_quality"] > 0.98  # 3 std in 2-D keeps ~98.9%


def test_collapse_and_smear_are_told_apart():
    centres, std = data.mixture_modes("ring")
    collapsed = centres[[0]] + 0.01 * np.random.default_rng(0).standard_normal((500, 2))
    result = metrics.mode_coverage(collapsed, centres, std)
    assert result["modes"] == 1 and result["high_quality"] == 1.0
    smear = np.random.default_rng(0).uniform(-3, 3, (20_000, 2))
    result = metrics.mode_coverage(smear, centres, std)
    assert result["modes"] == 8 and result["high_quality"] < 0.05


def test_shape_is_checked():
    centres, std = data.mixture_modes("grid")
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        metrics.mode_coverage(np.zeros((5, 3)), centres, std)


class DigitReader:
    """A stand-in judge that reads the digit d from an image filled with d / 10."""

    def probs(self, x):
        return np.eye(10)[np.rint(x.mean(axis=(1, 2, 3)) * 10).astype(int)]


def test_stacked_modes_count_three_digit_modes_and_their_balance():
    every_mode = np.stack([np.full((8, 8), d / 10) for d in range(10)])
    triples = np.array([[a, b, c] for a in range(10) for b in range(10) for c in range(10)])
    images = np.stack([every_mode[triples[:, c]] for c in range(3)], axis=-1)
    result = metrics.stacked_modes(DigitReader(), images)
    assert result["modes"] == 1000 and result["kl_from_uniform"] == pytest.approx(0.0, abs=1e-9)
    one = metrics.stacked_modes(DigitReader(), np.repeat(images[123:124], 50, axis=0))
    assert one["modes"] == 1 and one["counts"][123] == 50
    assert one["kl_from_uniform"] == pytest.approx(np.log(1000))
    with pytest.raises(ValueError, match="non-empty batch"):
        metrics.stacked_modes(DigitReader(), images[0])


def test_class_coverage_counts_classes_and_balance():
    probs = np.zeros((20, 4))
    probs[:10, 0] = 1.0             # 10 confident samples of class 0
    probs[10:15, 1] = 0.95          # 5 confident samples of class 1
    probs[10:15, 3] = 0.05
    probs[15:, 2], probs[15:, 0] = 0.6, 0.4  # 5 unsure samples of class 2
    result = metrics.class_coverage(probs)
    np.testing.assert_array_equal(result["counts"], [10, 5, 5, 0])
    assert result["classes"] == 3
    # shares (0.5, 0.25, 0.25, 0) against 1/4 each: 0.5 log 2 + 0.25 log 1 + 0.25 log 1
    assert result["kl_from_uniform"] == pytest.approx(0.5 * np.log(2))
    assert result["confident"] == pytest.approx(15 / 20)
    # one sample of class 1 among 100: below a tenth of its fair share (2.5), so not covered
    rare = np.eye(4)[[0] * 70 + [1] + [2] * 29]
    assert metrics.class_coverage(rare)["classes"] == 2
    one_class = metrics.class_coverage(np.eye(4)[[3] * 8])
    assert one_class["classes"] == 1 and one_class["kl_from_uniform"] == pytest.approx(np.log(4))
    with pytest.raises(ValueError, match="num_classes"):
        metrics.class_coverage(np.zeros(5))
    with pytest.raises(ValueError, match="min_share"):
        metrics.class_coverage(rare, min_share=0)


def gaussian(n, d, seed, mean=0.0, std=1.0):
    return mean + std * np.random.default_rng(seed).standard_normal((n, d))


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    real = gaussian(20_000, 8, seed=0)
    assert abs(metrics.frechet_distance(real, real)) < 1e-8
    # N(mu, s^2 I) against N(0, I): ||mu||^2 + d (s - 1)^2
    fake = gaussian(20_000, 8, seed=1, mean=0.5, std=2.0)
    assert metrics.frechet_distance(real, fake) == pytest.approx(8 * 0.25 + 8 * 1.0, rel=0.03)
    noisy = [metrics.frechet_distance(real, real + gaussian(20_000, 8, 2, std=s)) for s in (0.1, 0.3, 1.0)]
    assert noisy[0] < noisy[1] < noisy[2]


def test_kernel_distance_is_unbiased_near_zero_and_grows_with_a_shift():
    real, same = gaussian(2000, 16, seed=0), gaussian(2000, 16, seed=1)
    mean, spread = metrics.kernel_distance(real, same, subset_size=500, subsets=20)
    assert abs(mean) < 3 * spread + 1e-3
    shifted = [metrics.kernel_distance(real, same + s, subset_size=500, subsets=20)[0] for s in (0.2, 0.5)]
    assert 3 * spread < shifted[0] < shifted[1]


def brute_force_prdc(real, fake, k):
    """The definitions written out point by point, to check the vectorised version."""
    from scipy.spatial.distance import cdist

    def radii(x):
        return np.sort(cdist(x, x), axis=1)[:, k]

    r_real, r_fake, d = radii(real), radii(fake), cdist(real, fake)
    return {
        "precision": np.mean([any(d[i, j] <= r_real[i] for i in range(len(real))) for j in range(len(fake))]),
        "recall": np.mean([any(d[i, j] <= r_fake[j] for j in range(len(fake))) for i in range(len(real))]),
        "density": sum((d[i, j] <= r_real[i]) for i in range(len(real)) for j in range(len(fake))) / (k * len(fake)),
        "coverage": np.mean([d[i].min() <= r_real[i] for i in range(len(real))]),
    }


def test_prdc_agrees_with_the_definitions_and_sees_collapse():
    real, fake = gaussian(150, 3, seed=0), gaussian(120, 3, seed=1, mean=0.3)
    got = metrics.precision_recall_density_coverage(real, fake, k=5)
    want = brute_force_prdc(real, fake, k=5)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key
    # a generator that reproduces a few real points: precise but neither diverse nor covering
    collapsed = real[np.arange(300) % 3] + 0.01 * gaussian(300, 3, seed=2)
    result = metrics.precision_recall_density_coverage(real, collapsed, k=5)
    assert result["precision"] == 1.0 and result["recall"] < 0.1 and result["coverage"] < 0.2
    with pytest.raises(ValueError, match="`k`"):
        metrics.precision_recall_density_coverage(real, fake[:5], k=5)
    with pytest.raises(ValueError, match="same feature size"):
        metrics.frechet_distance(real, fake[:, :2])
    with pytest.raises(ValueError, match="`fake` must be finite"):
        metrics.kernel_distance(real, np.full((10, 3), np.nan))


def test_prdc_published_sanity_case():
    """Naeem et al.'s check: two independent N(0, I) samples of 10,000 in 1,000-D, k = 5, give
    precision ~0.48, recall ~0.47, density ~1.06, coverage ~0.97 (prdc's README). One draw moves
    these by a few hundredths (density by up to ~0.15: seeds 0-3 here gave 0.91-1.07), so the
    mean over two draws is held to bands around the published values."""
    results = [
        metrics.precision_recall_density_coverage(gaussian(10_000, 1000, 2 * s), gaussian(10_000, 1000, 2 * s + 1))
        for s in range(2)
    ]
    mean = {key: np.mean([r[key] for r in results]) for key in results[0]}
    print(mean)
    assert 0.44 < mean["precision"] < 0.52 and 0.44 < mean["recall"] < 0.51
    assert 0.85 < mean["density"] < 1.2 and 0.95 < mean["coverage"] < 0.99


def blob_splits(d, n_train, k=3, noise=0.5, seed=0, n_eval=30):
    """(train, val, test) pairs from k Gaussian blobs in d dimensions, centres ~5 apart per axis."""
    rng = np.random.default_rng(seed)
    centres = 5 * rng.standard_normal((k, d))

    def draw(n):
        y = np.arange(n) % k
        return centres[y] + noise * rng.standard_normal((n, d)), y

    return draw(n_train), draw(n_eval), draw(n_eval)


@pytest.mark.parametrize("d, n_train", [(5, 60), (200, 30)], ids=["primal", "dual"])
def test_probe_reads_separable_classes_perfectly(d, n_train):
    """n >= d solves in the (d, d) Gram matrix, n < d in the (n, n) one."""
    train, val, test = blob_splits(d, n_train)
    result = metrics.probe(train, val, test, 3)
    assert result["linear"] == result["knn"] == 1.0
    assert result["linear_val"] == result["knn_val"] == 1.0
    assert result["ridge"] == metrics.PROBE_RIDGES[0]  # ties go to the first (smallest)
    assert result["k"] == metrics.PROBE_NEIGHBOURS[0]
    assert set(metrics.probe(train, val, test, 3, knn=False)) == {"linear", "ridge", "linear_val"}
    # the same features shifted and scaled read the same: they are centred and rescaled
    moved = [(x * 100 + 7, y) for x, y in (train, val, test)]
    assert metrics.probe(*moved, 3) == pytest.approx(result)


def ridge_probe_by_hand(train, x, ridge, num_classes):
    """The closed form: centre and scale on train, W = (X^T X + ridge I)^-1 X^T Y, argmax x W."""
    x_train, y_train = train
    mean = x_train.mean(0)
    scale = np.sqrt(np.mean(np.sum((x_train - mean) ** 2, axis=1)))
    features = (x_train - mean) / scale
    targets = np.eye(num_classes)[y_train]
    intercept = targets.mean(0)
    w = np.linalg.solve(features.T @ features + ridge * np.eye(features.shape[1]),
                        features.T @ (targets - intercept))
    return (((x - mean) / scale) @ w + intercept).argmax(1)


def knn_by_hand(train, x, k):
    """Majority of the k most cosine-similar (centred) training examples; ties to the nearer."""
    x_train, y_train = train
    mean = x_train.mean(0)
    unit = lambda a: (a - mean) / np.linalg.norm(a - mean, axis=1, keepdims=True)
    similarity = unit(x) @ unit(x_train).T
    votes = []
    for row in similarity:
        nearest = np.argsort(-row)[:k]
        counts = np.bincount(y_train[nearest], minlength=3).astype(float)
        counts += 1e-6 * np.bincount(y_train[nearest], weights=row[nearest], minlength=3)
        votes.append(counts.argmax())
    return np.array(votes)


@pytest.mark.parametrize("d, n_train", [(20, 60), (80, 40)], ids=["primal", "dual"])
def test_probe_chooses_on_val_what_the_closed_forms_give(d, n_train):
    """Overlapping blobs, so the settings' validation accuracies differ: the probe keeps the
    first best ridge (k) on val, and its accuracies are the closed form's (the brute force's)."""
    train, val, test = blob_splits(d, n_train, noise=8.0, seed=1, n_eval=90)
    result = metrics.probe(train, val, test, 3)
    on_val = {r: np.mean(ridge_probe_by_hand(train, val[0], r, 3) == val[1])
              for r in metrics.PROBE_RIDGES}
    assert len(set(on_val.values())) > 1  # the choice matters here
    best = max(on_val, key=on_val.get)
    assert result["ridge"] == pytest.approx(best) and result["linear_val"] == on_val[best]
    assert result["linear"] == np.mean(ridge_probe_by_hand(train, test[0], best, 3) == test[1])
    knn_val = {k: np.mean(knn_by_hand(train, val[0], k) == val[1])
               for k in metrics.PROBE_NEIGHBOURS}
    best_k = max(knn_val, key=knn_val.get)
    assert result["k"] == best_k and result["knn_val"] == knn_val[best_k]
    assert result["knn"] == np.mean(knn_by_hand(train, test[0], best_k) == test[1])
    assert 0.4 < result["linear"] < 1.0  # neither chance nor perfect: a real comparison


def test_the_linear_probe_keeps_its_intercept_when_classes_are_imbalanced():
    """80% of class 0, class 1 shifted by 1 on one axis: without the intercept the probe scored
    0.60, under the 0.80 of always answering 0; least squares with it does better."""
    rng = np.random.default_rng(0)

    def draw(n):
        y = (rng.random(n) < 0.2).astype(int)
        return rng.standard_normal((n, 2)) + np.outer(y, [1.0, 0.0]), y

    train, val, test = draw(400), draw(400), draw(2000)
    majority = np.mean(test[1] == 0)
    assert metrics.probe(train, val, test, 2, knn=False)["linear"] >= majority


def test_probe_never_looks_at_test():
    """Shuffled test labels change the test accuracies, and nothing chosen."""
    train, val, (x_test, y_test) = blob_splits(20, 60, noise=8.0, seed=1, n_eval=90)
    result = metrics.probe(train, val, (x_test, y_test), 3)
    shuffled = metrics.probe(train, val, (x_test, np.random.default_rng(0).permutation(y_test)), 3)
    for key in ("ridge", "k", "linear_val", "knn_val"):
        assert shuffled[key] == result[key], key
    assert shuffled["linear"] != result["linear"] and shuffled["knn"] != result["knn"]
    # while other validation labels may change the choice
    (x_val, y_val) = val
    others = [metrics.probe(train, (x_val, np.random.default_rng(s).permutation(y_val)),
                            (x_test, y_test), 3) for s in range(5)]
    assert {(o["ridge"], o["k"]) for o in others} != {(result["ridge"], result["k"])}


def test_probe_neighbour_votes_take_the_majority_then_the_more_similar():
    x_train = np.array([[1.0, 0.1], [1.0, -0.3], [0.0, 1.0]])
    y_train = np.array([1, 0, 2])
    query = np.array([[1.0, 0.0]])
    votes = metrics._neighbour_votes(x_train, y_train, query, [1, 2, 3], 3)
    # k=2 and k=3 are ties, won by class 1, the most similar (not class 0, the lowest index)
    assert {k: v.tolist() for k, v in votes.items()} == {1: [1], 2: [1], 3: [1]}
    crowd = np.array([[1.0, 0.05], [1.0, 0.3], [1.0, -0.3], [1.0, 0.4]])
    votes = metrics._neighbour_votes(crowd, np.array([2, 0, 0, 1]), query, [1, 3], 3)
    assert votes[1].tolist() == [2] and votes[3].tolist() == [0]  # two far votes beat one near
    # cosine: the length of a feature vector does not matter
    votes = metrics._neighbour_votes(x_train * [[100.0], [1.0], [1.0]], y_train, query * 5, [1], 3)
    assert votes[1].tolist() == [1]
    many = np.random.default_rng(0).standard_normal((50, 4))  # chunks agree with one pass
    labels = np.arange(50) % 3
    whole = metrics._neighbour_votes(many, labels, many[:30] * 2, [1, 5], 3)
    chunked = metrics._neighbour_votes(many, labels, many[:30] * 2, [1, 5], 3, chunk=7)
    for k in (1, 5):
        np.testing.assert_array_equal(whole[k], chunked[k])
    np.testing.assert_array_equal(whole[1], np.arange(30) % 3)  # each its own nearest


def test_probe_bad_inputs_name_the_argument():
    train, val, test = blob_splits(5, 30)
    with pytest.raises(ValueError, match=r"`train` must be a pair \(features, labels\); "
                                         "received ndarray"):
        metrics.probe(train[0], val, test, 3)
    with pytest.raises(ValueError, match="`val` must be a pair"):
        metrics.probe(train, (*val, val[1]), test, 3)
    with pytest.raises(ValueError, match=r"`val`'s labels must lie in \[0, num_classes\) = "
                                         r"\[0, 3\); found values from 0 to 3"):
        metrics.probe(train, (val[0], np.where(val[1] == 2, 3, val[1])), test, 3)
    with pytest.raises(ValueError, match="`train`'s labels must lie in .* from -1"):
        metrics.probe((train[0], train[1] - 1), val, test, 3)
    with pytest.raises(ValueError, match=r"`test` must pair features of shape \(n, d\) with n "
                                         r"labels; received shape \(30, 5\) and 29 labels"):
        metrics.probe(train, val, (test[0], test[1][:-1]), 3)
    with pytest.raises(ValueError, match=r"`test` must pair features of shape \(n, d\)"):
        metrics.probe(train, val, (test[0][:, 0], test[1]), 3)
    with pytest.raises(ValueError, match="`train` and `val` and `test` must have the same "
                                         "feature size"):
        metrics.probe(train, (val[0][:, :4], val[1]), test, 3)
    with pytest.raises(ValueError, match="`val` must be finite features"):
        metrics.probe(train, (np.where(val[0] > 4, np.nan, val[0]), val[1]), test, 3)
    with pytest.raises(ValueError, match="integer dtype"):
        metrics.probe(train, val, (test[0], test[1].astype(float)), 3)


def test_layer_outputs_reads_the_encoders_features():
    encoder = nets.dcgan_encoder((8, 8, 1), 8, width=8)
    x = np.random.default_rng(0).uniform(-1, 1, (5, 8, 8, 1)).astype("float32")
    features = metrics.layer_outputs(encoder, x)
    assert features.shape == (5, 2 * 2 * 16) and features.dtype == np.float32  # 2 convs, stride 2
    embeddings = metrics.layer_outputs(encoder, x, "embedding", batch_size=2)
    np.testing.assert_allclose(embeddings, encoder.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    kernel, bias = encoder.get_layer("embedding").get_weights()  # the features feed the embedding
    np.testing.assert_allclose(features @ kernel + bias, embeddings, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="`encoder` has no layer named 'feature'; its layers are "
                                         r"\[.*'features'"):
        metrics.layer_outputs(encoder, x, "feature")
