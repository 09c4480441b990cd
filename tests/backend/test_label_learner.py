"""alllib.AdversarialLabelLearner and SoftTargets on the backend in KERAS_BACKEND."""

import numpy as np
import pytest

import keras
from keras import ops

import alllib
from alllib import backend, experiments, metrics, nets

K = 3


def blobs(n=240, seed=0):
    """Three well-separated Gaussian blobs in 4-D with integer labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n).astype("int32")
    x = (3 * np.eye(4)[y] + 0.5 * rng.standard_normal((n, 4))).astype("float32")
    return x, y


def make_learner(seed=0, conditional=False, d_optimizer=None, p_optimizer=None, spectral_norm=False,
                 **kwargs):
    keras.utils.set_random_seed(seed)
    predictor = nets.mlp_predictor((4,), K, width=16)
    discriminator = nets.label_discriminator(
        K, input_shape=(4,) if conditional else None, width=16, spectral_norm=spectral_norm
    )
    compile_args = {
        k: kwargs.pop(k) for k in ("loss", "penalty", "penalty_weight", "d_steps") if k in kwargs
    }
    learner = alllib.AdversarialLabelLearner(
        predictor, discriminator, K, conditional=conditional, **kwargs
    )
    learner.compile(
        d_optimizer=d_optimizer or keras.optimizers.Adam(1e-3),
        p_optimizer=p_optimizer or keras.optimizers.Adam(1e-3),
        **compile_args,
    )
    return learner


def weights(network):
    return [np.array(w) for w in network.get_weights()]


def changed(before, after):
    return any(not np.array_equal(b, a) for b, a in zip(before, after))


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("still", ["predictor", "discriminator"])
def test_each_step_moves_only_its_own_player(still, conditional):
    moving = "discriminator" if still == "predictor" else "predictor"
    learner = make_learner(conditional=conditional,
                           **{f"{still[0]}_optimizer": keras.optimizers.SGD(0.0)})
    before = {name: weights(getattr(learner, name)) for name in (still, moving)}
    learner.fit(*blobs(), batch_size=60, epochs=1, verbose=0)
    assert not changed(before[still], weights(getattr(learner, still)))
    assert changed(before[moving], weights(getattr(learner, moving)))


@pytest.mark.parametrize("penalty", ["r1", "gradient_penalty"])
def test_a_penalty_changes_only_the_discriminators_update(penalty):
    def train(penalty, still):
        learner = make_learner(penalty=penalty, **{f"{still[0]}_optimizer": keras.optimizers.SGD(0.0)})
        learner.fit(*blobs(), batch_size=60, epochs=1, verbose=0)
        return weights(learner.predictor) + weights(learner.discriminator)

    # The discriminator's update differs with the penalty...
    assert changed(train(None, "predictor"), train(penalty, "predictor"))
    # ...but with the discriminator held still, the predictor's updates are identical.
    without, with_penalty = train(None, "discriminator"), train(penalty, "discriminator")
    assert all(np.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in zip(without, with_penalty))


@pytest.mark.parametrize("loss", sorted(alllib.losses.LOSSES))
def test_every_loss_trains(loss):
    history = make_learner(conditional=True, loss=loss).fit(*blobs(), batch_size=60, epochs=2,
                                                            verbose=0)
    for key in ("d_loss", "p_loss", "d_acc"):
        assert all(np.isfinite(history.history[key])), (loss, key)
    assert all(0.0 <= v <= 1.0 for v in history.history["d_acc"])


def test_one_forward_pass_gives_the_same_gradient_as_two():
    """backend.forward + tensor_gradient (the learner's round) against differentiating the
    whole predictor objective at once."""
    from alllib import backend

    learner = make_learner(conditional=True, ce_weight=0.7)
    x, y = blobs(32)
    x = ops.convert_to_tensor(x)
    one_hot = ops.one_hot(ops.convert_to_tensor(y, "int32"), K, dtype="float32")
    variables = learner.predictor.trainable_variables

    def objective(probs):
        adversarial, ce = learner.predictor_terms(x, one_hot, probs, training=False)
        return adversarial + 0.7 * ce, ()

    _, _, direct = backend.gradients(
        lambda: objective(ops.cast(learner.predictor(x), "float32")), variables)
    probs, pullback = backend.forward(lambda: ops.cast(learner.predictor(x), "float32"), variables)
    _, _, output_grads = backend.tensor_gradient(objective, ops.stop_gradient(probs))
    shared = pullback(output_grads)
    for a, b in zip(direct, shared):
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(b),
                                   rtol=1e-5, atol=1e-7)
    assert max(float(np.abs(ops.convert_to_numpy(g)).max()) for g in direct) > 0


def test_optimizers_advance_their_own_state_and_d_steps_counts():
    learner = make_learner(d_steps=2)
    learner.fit(*blobs(), batch_size=60, epochs=2, verbose=0)  # 8 rounds
    assert int(ops.convert_to_numpy(learner.p_optimizer.iterations)) == 8
    assert int(ops.convert_to_numpy(learner.d_optimizer.iterations)) == 16
    assert int(ops.convert_to_numpy(learner.optimizer.iterations)) == 8


LEARNER_LOGS = ("loss", "d_loss", "p_loss", "d_acc", "accuracy", "d_grad_norm", "p_grad_norm")


def test_logs():
    history = make_learner().fit(*blobs(), batch_size=60, epochs=2, verbose=0)
    assert sorted(history.history) == sorted(LEARNER_LOGS)
    total = np.add(history.history["d_loss"], history.history["p_loss"])
    np.testing.assert_allclose(history.history["loss"], total, rtol=1e-5)
    for key in ("d_acc", "accuracy"):
        assert all(0.0 <= v <= 1.0 for v in history.history[key])


def test_conditional_learner_learns_blobs_and_a_seed_repeats():
    def train(seed):
        learner = make_learner(seed=seed, conditional=True)
        learner.fit(*blobs(480), batch_size=32, epochs=25, verbose=0, shuffle=True)
        return learner

    learner = train(0)
    x_test, y_test = blobs(300, seed=1)
    accuracy = learner.evaluate(x_test, y_test, return_dict=True, verbose=0)["accuracy"]
    print("conditional blobs accuracy:", accuracy)
    assert accuracy > 0.9  # chance is 1/3
    again = train(0)
    assert all(np.array_equal(a, b) for a, b in
               zip(weights(learner.predictor), weights(again.predictor)))


def test_evaluate_accumulates_over_the_whole_set():
    learner = make_learner()
    learner.fit(*blobs(), batch_size=60, epochs=2, verbose=0)
    x, y = blobs(203, seed=2)  # 203 = 6 batches of 32 and one of 11
    result = learner.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
    assert sorted(result) == ["accuracy", "ece", "nll"]
    probs = learner.predict(x, batch_size=32, verbose=0)
    assert probs.shape == (203, K) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert result["accuracy"] == pytest.approx(metrics.accuracy(probs, y), abs=1e-6)
    assert result["nll"] == pytest.approx(metrics.nll(probs, y), rel=1e-4)
    assert result["ece"] == pytest.approx(metrics.expected_calibration_error(probs, y), abs=1e-5)
    # a mean of per-batch ECEs is a different number; make sure this is not one
    per_batch = np.mean([metrics.expected_calibration_error(probs[i:i + 32], y[i:i + 32])
                         for i in range(0, 203, 32)])
    assert abs(per_batch - result["ece"]) > 1e-4


def test_calibration_error_metric_matches_numpy():
    rng = np.random.default_rng(0)
    logits = 3 * rng.standard_normal((500, 5))
    probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype("float32")
    labels = rng.integers(0, 5, 500)
    # float32 confidences on bin edges (0.8 = 12/15, 0.6 = 9/15) must land in the same bin
    probs[:2] = np.array([[0.8, 0.05, 0.05, 0.05, 0.05], [0.6, 0.1, 0.1, 0.1, 0.1]], "float32")
    metric = metrics.CalibrationError()
    for i in range(0, 500, 128):
        metric.update_state(labels[i:i + 128], probs[i:i + 128])
    expected = metrics.expected_calibration_error(probs, labels)
    assert float(ops.convert_to_numpy(metric.result())) == pytest.approx(expected, abs=1e-6)
    metric.reset_state()
    assert float(ops.convert_to_numpy(metric.result())) == 0.0


@pytest.mark.parametrize("epsilon, concentration", [(0.1, 50.0), (0.3, 5.0), (0.2, None)])
def test_soft_targets_are_probability_vectors_with_the_configured_mean(epsilon, concentration):
    targets = alllib.SoftTargets(epsilon, concentration)
    labels = np.arange(20000) % 4
    one_hot = ops.one_hot(ops.convert_to_tensor(labels, "int32"), 4, dtype="float32")
    draws = ops.convert_to_numpy(targets(one_hot, seed=keras.random.SeedGenerator(0)))
    assert np.all(draws >= 0) and np.allclose(draws.sum(1), 1, atol=1e-5)
    expected = (1 - epsilon) * np.eye(4)[labels] + epsilon / 4
    for k in range(4):
        mean = draws[labels == k].mean(0)
        np.testing.assert_allclose(mean, expected[labels == k][0], atol=0.01)  # ~4 standard errors
    if concentration is None:
        np.testing.assert_allclose(draws, expected, atol=1e-6)
    else:
        assert draws[:, 0].std() > 1e-3  # actually random
        # Dirichlet variance of the true-class entry: m (1 - m) / (concentration + 1)
        m = 1 - epsilon + epsilon / 4
        on = draws[np.arange(20000), labels]
        assert on.var() == pytest.approx(m * (1 - m) / (concentration + 1), rel=0.1)


def test_tiny_concentrations_never_give_nan():
    one_hot = ops.one_hot(ops.convert_to_tensor(np.arange(5000) % 10, "int32"), 10, dtype="float32")
    draws = ops.convert_to_numpy(alllib.SoftTargets(0.01, 0.05)(one_hot, seed=keras.random.SeedGenerator(0)))
    assert np.all(np.isfinite(draws)) and np.allclose(draws.sum(1), 1, atol=1e-5)


def test_hard_targets_are_one_hot():
    one_hot = ops.one_hot(ops.convert_to_tensor([2, 0], "int32"), 3, dtype="float32")
    draws = ops.convert_to_numpy(alllib.SoftTargets(0.0, None)(one_hot))
    np.testing.assert_array_equal(draws, [[0, 0, 1], [1, 0, 0]])


def test_spectral_dense_normalises_and_updates_its_state_in_fit():
    layer = nets.SpectralDense(3)
    x = np.random.default_rng(0).standard_normal((2, 5)).astype("float32")
    for _ in range(30):
        layer(x, training=True)  # power iteration converges
    kernel = ops.convert_to_numpy(layer.kernel)
    out = ops.convert_to_numpy(layer(x)) - ops.convert_to_numpy(layer.bias)
    sigma = np.linalg.svd(kernel, compute_uv=False)[0]
    np.testing.assert_allclose(out, x @ kernel / sigma, rtol=1e-4, atol=1e-5)

    learner = make_learner(spectral_norm=True)
    u_before = [np.array(v) for v in learner.discriminator.non_trainable_weights]
    assert len(u_before) == 3
    learner.fit(*blobs(), batch_size=60, epochs=1, verbose=0)
    u_after = [np.array(v) for v in learner.discriminator.non_trainable_weights]
    assert all(not np.allclose(a, b) for a, b in zip(u_before, u_after))


def test_gradient_norms_split_the_hybrid_loss():
    x, y = blobs(64)
    pure = metrics.predictor_gradient_norms(make_learner(), x, y)
    assert pure["ce"] == 0 and pure["adversarial_share"] == 1.0 and pure["adversarial"] > 0
    hybrid = metrics.predictor_gradient_norms(make_learner(ce_weight=1.0), x, y)
    assert 0 < hybrid["adversarial_share"] < 1 and hybrid["ce"] > 0


def test_the_adversarial_gradient_factors_at_the_softmax():
    """probability_gradient * softmax_gain is the norm of the adversarial loss's gradient with
    respect to the logits, computed here by differentiating through a softmax."""
    x, y = blobs(64)
    learner = make_learner()
    norms = metrics.predictor_gradient_norms(learner, x, y)
    output = learner.predictor.layers[-1]  # Dense with a softmax: take its logits apart
    hidden = keras.Model(learner.predictor.inputs, output.input)
    one_hot = ops.one_hot(ops.convert_to_tensor(y), K)
    x_tensor = ops.convert_to_tensor(x)
    logits = ops.matmul(hidden(x_tensor, training=False), output.kernel) + output.bias
    _, _, grad = backend.tensor_gradient(
        lambda z: (learner.predictor_terms(x_tensor, one_hot, ops.softmax(z), False)[0], ()),
        logits)
    through_softmax = np.linalg.norm(ops.convert_to_numpy(grad))
    assert norms["probability_gradient"] > 0 and 0 < norms["softmax_gain"] < 1
    assert norms["probability_gradient"] * norms["softmax_gain"] == pytest.approx(
        through_softmax, rel=1e-3)


@pytest.mark.one_backend  # Keras's own fit on a plain discriminator
def test_a_fresh_discriminator_sees_the_wrong_class_only_with_the_input():
    """Labels shifted by one class look as label-like as the true ones: a fresh label-only
    discriminator cannot tell them apart, a fresh conditional one, given [x, label] lists, can."""
    x, y = blobs(400)
    right, wrong = np.eye(K, dtype="float32")[y], np.eye(K, dtype="float32")[(y + 1) % K]
    train, held = slice(0, 300), slice(300, None)
    accuracy = {}
    for conditional in (False, True):
        pair = (lambda v, s: [x[s], v[s]]) if conditional else (lambda v, s: v[s])
        architecture = nets.label_discriminator(K, input_shape=(4,) if conditional else None)
        fresh = metrics.fresh_discriminator(architecture, pair(right, train), pair(wrong, train),
                                            epochs=20, seed=0)
        accuracy[conditional] = metrics.logit_accuracy(fresh, pair(right, held), pair(wrong, held))
    assert accuracy[True] > 0.9 and accuracy[False] < 0.75, accuracy


@pytest.mark.one_backend  # the round itself is tested with small networks on every backend
def test_image_sized_reference_networks_train():
    x = np.random.default_rng(0).uniform(-1, 1, (16, 32, 32, 3)).astype("float32")
    y = np.arange(16, dtype="int32") % 10
    keras.utils.set_random_seed(0)
    learner = alllib.AdversarialLabelLearner(
        nets.conv_predictor((32, 32, 3), 10, width=8),
        nets.label_discriminator(10, input_shape=(32, 32, 3), width=16),
        10, conditional=True,
    )
    learner.compile(d_optimizer="adam", p_optimizer="adam")
    history = learner.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["p_loss"][0])
    assert learner.predict(x, verbose=0).shape == (16, 10)


def test_numpy_scalars_are_accepted():
    learner = alllib.AdversarialLabelLearner(
        nets.mlp_predictor((4,), K), nets.label_discriminator(K), np.int64(K),
        targets=alllib.SoftTargets(np.float32(0.1), np.float64(20.0)), ce_weight=np.float32(0.5))
    learner.compile(d_optimizer="adam", p_optimizer="adam", d_steps=np.int32(2))
    assert learner.num_classes == K and learner.d_steps == 2


def test_config_round_trip():
    learner = make_learner(conditional=True, ce_weight=0.5,
                           targets=alllib.SoftTargets(0.2, 10.0))
    clone = alllib.AdversarialLabelLearner.from_config(learner.get_config())
    assert (clone.num_classes, clone.conditional, clone.ce_weight) == (K, True, 0.5)
    assert clone.targets.get_config() == {"epsilon": 0.2, "concentration": 10.0}
    assert [v.shape for v in clone.weights] == [v.shape for v in learner.weights]


@pytest.mark.parametrize("structure", ["list", "dict"])
def test_a_multi_input_predictor_trains_evaluates_and_is_checked(structure):
    """Several inputs (a list or a dict of arrays) go to the predictor as Keras models take them;
    the data checks look at each input."""
    x, y = blobs()
    first, second = keras.Input((2,), name="first"), keras.Input((2,), name="second")
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([first, second]))
    predictor = keras.Model([first, second] if structure == "list" else
                            {"first": first, "second": second},
                            keras.layers.Dense(K, activation="softmax")(hidden))
    inputs = ([x[:, :2], x[:, 2:]] if structure == "list" else
              {"first": x[:, :2], "second": x[:, 2:]})
    learner = alllib.AdversarialLabelLearner(predictor, nets.label_discriminator(K, width=16), K,
                                             ce_weight=1.0)
    learner.compile(d_optimizer="adam", p_optimizer="adam")
    history = learner.fit(inputs, y, batch_size=60, epochs=2, verbose=0)
    assert np.isfinite(history.history["p_loss"]).all()
    assert set(learner.evaluate(inputs, y, return_dict=True, verbose=0)) >= {"accuracy", "nll"}
    short = keras.tree.map_structure(lambda a: a[:-1], inputs)
    with pytest.raises(ValueError, match=r"must have the same length; received 239 and 240"):
        learner.fit(short, y, verbose=0)
    bad = keras.tree.map_structure(lambda a: np.where(a > 3.5, np.nan, a), inputs)
    with pytest.raises(ValueError, match=r"NaN or infinite"):
        learner.fit(bad, y, verbose=0)
    conditional = alllib.AdversarialLabelLearner(
        predictor, nets.label_discriminator(K, input_shape=(4,)), K, conditional=True)
    conditional.compile(d_optimizer="adam", p_optimizer="adam")
    with pytest.raises(ValueError, match="holds 2 inputs, but a conditional discriminator"):
        conditional.fit(inputs, y, verbose=0)


@pytest.mark.parametrize("conditional", [False, True])
def test_eager_mode_trains_as_compiled_mode_does(conditional):
    """`run_eagerly=True`, what users debug with: eager JAX hands the step NumPy batches."""
    x, y = blobs(120)
    logs = []
    for eager in (False, True):
        learner = make_learner(conditional=conditional, penalty="r1")
        learner.compile(d_optimizer=keras.optimizers.Adam(1e-3),
                        p_optimizer=keras.optimizers.Adam(1e-3), penalty="r1", run_eagerly=eager)
        history = learner.fit(x, y, batch_size=60, epochs=2, shuffle=False, verbose=0).history
        logs.append([history[k][-1] for k in ("d_loss", "p_loss")])
    np.testing.assert_allclose(logs[0], logs[1], rtol=1e-4, atol=1e-5)


def test_the_gradient_probe_reads_the_weights_of_the_step_it_probes():
    """Probes before training and every 3 steps over 2 epochs of 5 steps; the last probe (step 9
    of 10) is taken on the weights as they were then, so it differs from a probe of the final
    weights."""
    x, y = blobs(80)
    learner = make_learner()
    untrained = metrics.predictor_gradient_norms(learner, x[:32], y[:32])["adversarial"]
    probe = alllib.callbacks.GradientProbe(x[:32], y[:32], every=3)
    learner.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[probe])
    assert probe.steps == [0, 3, 6, 9]
    assert probe.values["adversarial"][0] == pytest.approx(untrained, rel=1e-6)
    assert set(probe.values) >= {"adversarial", "probability_gradient", "softmax_gain"}
    assert len(set(probe.values["adversarial"])) == 4  # the weights moved between probes
    final = metrics.predictor_gradient_norms(learner, x[:32], y[:32])["adversarial"]
    assert final != pytest.approx(probe.values["adversarial"][-1], rel=1e-6)


def test_batch_frequencies_show_a_collapse_to_every_example(tmp_path):
    collapsed = np.eye(K, dtype="float32")[[1] * 6]
    balanced = np.eye(K, dtype="float32")[np.arange(6) % K]
    layer = nets.BatchFrequencies()
    np.testing.assert_allclose(ops.convert_to_numpy(layer(collapsed))[:, K:], collapsed)
    np.testing.assert_allclose(ops.convert_to_numpy(layer(balanced))[:, K:], np.full((6, K), 1 / K),
                               rtol=1e-6)
    # One example's score moves with another example's vector: the gradient crosses the batch.
    discriminator = nets.label_discriminator(K, width=8, batch_frequencies=True)
    _, _, grad = backend.tensor_gradient(
        lambda v: (ops.sum(discriminator(v)[0]), ()), ops.convert_to_tensor(balanced))
    assert np.abs(ops.convert_to_numpy(grad)[1:]).max() > 0
    with pytest.raises(ValueError, match="looks across the batch"):
        metrics.fresh_discriminator(discriminator, balanced, collapsed)
    conditional = nets.label_discriminator(K, input_shape=(4,), width=8, batch_frequencies=True)
    assert nets.scores_depend_on_batch(conditional)
    assert conditional.count_params() > nets.label_discriminator(K, input_shape=(4,), width=8).count_params()
    # The learner trains with it, and saves and reloads it.
    learner = experiments.build({"batch_frequencies": True}, (4,), K, seed=0)
    x, y = blobs()
    learner.fit(x, y, batch_size=60, epochs=2, verbose=0)
    assert any(isinstance(l, nets.BatchFrequencies) for l in learner.discriminator.layers)
    learner.save(tmp_path / "learner.keras")
    reloaded = keras.saving.load_model(tmp_path / "learner.keras")
    np.testing.assert_allclose(ops.convert_to_numpy(reloaded.discriminator(balanced)),
                               ops.convert_to_numpy(learner.discriminator(balanced)), rtol=1e-5)
