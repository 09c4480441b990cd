"""alllib.Distiller and alllib.LabelAuction on the backend in KERAS_BACKEND."""

import numpy as np
import pytest

import keras
from keras import ops

import alllib
from alllib import metrics, nets
from alllib.distiller import UNLABELED, softened_kl
from test_label_learner import K, blobs

x, y = blobs(240)


def teacher_network():
    """A teacher trained with cross-entropy on the blobs (built once per test: Keras tracks it)."""
    keras.utils.set_random_seed(7)
    teacher = nets.mlp_predictor((4,), K, width=32, name="teacher")
    teacher.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    teacher.fit(x, y, epochs=10, batch_size=40, verbose=0)
    return teacher


def make_distiller(teacher=None, adversarial=True, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    student = nets.mlp_predictor((4,), K, width=8, name="student")
    discriminator = nets.label_discriminator(K, input_shape=(4,), width=8) if adversarial else None
    compile_args = {k: kwargs.pop(k) for k in ("penalty", "d_steps") if k in kwargs}
    if adversarial:
        compile_args["d_optimizer"] = keras.optimizers.Adam(1e-3)
    settings = dict(kd_weight=1.0, temperature=2.0, ce_weight=0.5, seed=seed)
    model = alllib.Distiller(student, teacher or teacher_network(), discriminator, K,
                             **{**settings, **kwargs})
    model.compile(p_optimizer=keras.optimizers.Adam(1e-2), **compile_args)
    return model


def make_auction(k=3, bidding=False, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    predictors = [nets.mlp_predictor((4,), K, width=8, name=f"bidder_{i}") for i in range(k)]
    model = alllib.LabelAuction(predictors, nets.label_discriminator(K, input_shape=(4,), width=8),
                                K, conditional=True, ce_weight=0.5, bidding=bidding, seed=seed,
                                **kwargs)
    model.compile(d_optimizer=keras.optimizers.Adam(1e-3), p_optimizer=keras.optimizers.Adam(1e-2))
    return model


def iterations(optimizer):
    return int(ops.convert_to_numpy(optimizer.iterations))


def few_labels():
    """The blobs with all but 30 labels hidden."""
    partial = y.copy()
    partial[30:] = UNLABELED
    return partial


@pytest.mark.parametrize("adversarial", [False, True])
def test_the_teacher_never_moves_and_the_student_learns_it(adversarial):
    model = make_distiller(adversarial=adversarial)
    teacher_before = [w.copy() for w in model.teacher.get_weights()]
    student_before = [w.copy() for w in model.student.get_weights()]
    history = model.fit(x, few_labels(), batch_size=40, epochs=15, verbose=0)
    for before, after in zip(teacher_before, model.teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert any(not np.array_equal(a, b) for a, b in zip(student_before, model.student.get_weights()))
    assert not hasattr(model, "t_optimizer") and "t_loss" not in history.history
    assert not model.teacher.trainable  # so no optimizer keeps moments for its weights
    assert not any(v.path.startswith(f"{model.teacher.name}/") for v in model.trainable_variables)
    logs = model.evaluate(x, y, batch_size=60, verbose=0, return_dict=True)
    assert set(logs) == {"accuracy", "nll", "ece", "agreement"}
    assert logs["agreement"] > 0.9 and logs["accuracy"] > 0.9
    np.testing.assert_allclose(model.predict(x, verbose=0), ops.convert_to_numpy(model.student(x)),
                               rtol=1e-5, atol=1e-6)  # the student's probabilities


def test_the_softened_kl_is_hintons_term():
    rng = np.random.default_rng(0)
    teacher, student = (rng.dirichlet(np.ones(K), 16).astype("float32") for _ in range(2))

    def soften(p, t):
        z = np.log(p) / t
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    for temperature in (1.0, 4.0):
        pt, ps = soften(teacher, temperature), soften(student, temperature)
        expected = temperature ** 2 * np.mean(np.sum(pt * np.log(pt / ps), 1))
        value = ops.convert_to_numpy(softened_kl(ops.convert_to_tensor(teacher),
                                                 ops.convert_to_tensor(student), temperature))
        np.testing.assert_allclose(value, expected, rtol=1e-4)
    assert float(ops.convert_to_numpy(softened_kl(ops.convert_to_tensor(teacher),
                                                  ops.convert_to_tensor(teacher), 3.0))) < 1e-6


def test_cross_entropy_counts_only_the_labelled_examples():
    model = make_distiller(adversarial=False, kd_weight=0.0, ce_weight=1.0)
    probs = ops.convert_to_tensor(model.student(x[:40]))
    labels = few_labels()[:40]
    mask = (labels >= 0).astype("float32")
    loss, _ = model.student_objective(None, ops.convert_to_tensor(labels),
                                      ops.convert_to_tensor(mask), None, probs)
    p = ops.convert_to_numpy(probs)[:30]
    expected = -np.mean(np.log(p[np.arange(30), y[:30]]))
    np.testing.assert_allclose(ops.convert_to_numpy(loss), expected, rtol=1e-5)


def test_distiller_errors_name_the_argument():
    teacher = teacher_network()
    student = nets.mlp_predictor((4,), K, width=8, name="student")
    wide = nets.mlp_predictor((4,), K + 1, width=8, name="wide_teacher")
    with pytest.raises(ValueError, match="teacher's output has width 4 and the student's 3"):
        alllib.Distiller(student, wide, None, K, kd_weight=1.0)
    with pytest.raises(ValueError, match="nothing to learn"):
        alllib.Distiller(student, teacher, None, K)
    with pytest.raises(ValueError, match="needs a `discriminator`"):
        alllib.Distiller(student, teacher, None, K, adversarial_weight=1.0)
    discriminator = nets.label_discriminator(K, input_shape=(4,), width=8)
    with pytest.raises(ValueError, match="adversarial_weight=0"):
        alllib.Distiller(student, teacher, discriminator, K, adversarial_weight=0.0)
    with pytest.raises(ValueError, match="`temperature` must be positive"):
        alllib.Distiller(student, teacher, None, K, kd_weight=1.0, temperature=0.0)
    model = alllib.Distiller(student, teacher, None, K, kd_weight=1.0)
    with pytest.raises(ValueError, match="no discriminator, so it takes no `d_optimizer`"):
        model.compile(p_optimizer="adam", d_optimizer="adam")
    model.compile(p_optimizer="adam")
    with pytest.raises(ValueError, match=r"\[0, 3\) or -1 \(unlabeled\); found values from -2"):
        model.fit(x, np.where(y == 0, -2, y), verbose=0)
    with pytest.raises(ValueError, match="marks every example unlabeled"):
        model.evaluate(x, np.full(len(x), UNLABELED), verbose=0)
    with pytest.raises(TypeError, match="`student` must be a keras.Model"):
        alllib.Distiller("mlp", teacher, None, K, kd_weight=1.0)
    with pytest.raises(ValueError, match="must lie in"):  # the learner keeps refusing -1
        from test_label_learner import make_learner
        make_learner().fit(x, few_labels(), verbose=0)


@pytest.mark.parametrize("bidding", [False, True])
def test_each_predictors_iterations_count_its_updates(bidding):
    model = make_auction(bidding=bidding)
    history = model.fit(x, y, batch_size=40, epochs=3, verbose=0)
    rounds = iterations(model.optimizer)
    assert rounds == 18 and iterations(model.d_optimizer) == rounds
    counts = [iterations(getattr(model, f"p{k}_optimizer")) for k in range(3)]
    wins = [history.history[f"p{k}_wins"] for k in range(3)]
    if bidding:
        assert sum(counts) == rounds
        # p{k}_wins is each epoch's share of its 6 rounds that predictor k won
        np.testing.assert_allclose(counts, [6 * sum(w) for w in wins], atol=1e-4)
    else:
        assert counts == [rounds] * 3
        np.testing.assert_allclose(np.sum(wins, axis=0), 1.0, atol=1e-6)


def test_in_the_bidding_round_only_the_winner_moves():
    model = make_auction(bidding=True)

    def state(k):
        network, optimizer = model.predictors[k], getattr(model, f"p{k}_optimizer")
        return [np.array(v) for v in network.weights + optimizer.variables]

    for batch in range(3):
        before = [state(k) for k in range(3)]
        logs = model.train_on_batch(x[40 * batch:40 * (batch + 1)], y[40 * batch:40 * (batch + 1)],
                                    return_dict=True)
        moved = [any(not np.array_equal(a, b) for a, b in zip(before[k], state(k)))
                 for k in range(3)]
        assert sum(moved) == 1, moved
        winner = moved.index(True)
        # the running mean over the batches so far: the winner's share went up
        assert logs[f"p{winner}_wins"] > 0


def test_the_auction_predicts_the_mean_of_its_predictors_and_evaluates_it():
    model = make_auction()
    model.fit(x, y, batch_size=40, epochs=2, verbose=0)
    mean = np.mean([ops.convert_to_numpy(p(x)) for p in model.predictors], axis=0)
    np.testing.assert_allclose(ops.convert_to_numpy(model(x)), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(x, verbose=0), mean, rtol=1e-5, atol=1e-6)
    logs = model.evaluate(x, y, batch_size=240, verbose=0, return_dict=True)
    assert logs["accuracy"] == pytest.approx(np.mean(mean.argmax(1) == y))


def test_auction_errors_name_the_argument():
    discriminator = nets.label_discriminator(K, width=8)
    one = nets.mlp_predictor((4,), K, width=8, name="one")
    with pytest.raises(ValueError, match="non-empty list"):
        alllib.LabelAuction([], discriminator, K)
    with pytest.raises(ValueError, match="use alllib.AdversarialLabelLearner"):
        alllib.LabelAuction([one], discriminator, K)
    with pytest.raises(ValueError, match="same network more than once"):
        alllib.LabelAuction([one, one], discriminator, K)
    with pytest.raises(TypeError, match="`bidding` must be True or False"):
        alllib.LabelAuction([one, nets.mlp_predictor((4,), K, width=8, name="two")],
                            discriminator, K, bidding="winner")
    with pytest.raises(TypeError, match=r"`predictors\[1\]` must be a keras.Model"):
        alllib.LabelAuction([one, "mlp"], discriminator, K)
    wrong = nets.mlp_predictor((4,), K + 1, width=8, name="wrong")
    model = alllib.LabelAuction([one, wrong], discriminator, K)
    with pytest.raises(ValueError, match="p_optimizer` or `p1_optimizer`, not both"):
        model.compile(d_optimizer="adam", p_optimizer="adam", p1_optimizer="adam")
    with pytest.raises(TypeError, match="needs `p_optimizer`"):
        model.compile(d_optimizer="adam")
    model.compile(d_optimizer="adam", p_optimizer="adam")
    assert model.p0_optimizer is not model.p1_optimizer
    with pytest.raises(ValueError, match=r"`predictors\[1\]` must return probabilities of shape"):
        model.fit(x, y, verbose=0)


def test_a_distiller_without_a_discriminator_takes_a_multi_input_student():
    inputs = [keras.Input((2,)), keras.Input((2,))]
    joined = keras.layers.Concatenate()(inputs)
    student = keras.Model(inputs, keras.layers.Dense(K, activation="softmax")(joined), name="two")
    teacher_inputs = [keras.Input((2,)), keras.Input((2,))]
    teacher = keras.Model(teacher_inputs, keras.layers.Dense(K, activation="softmax")(
        keras.layers.Concatenate()(teacher_inputs)), name="two_teacher")
    model = alllib.Distiller(student, teacher, None, K, kd_weight=1.0)
    model.compile(p_optimizer="adam")
    model.fit([x[:, :2], x[:, 2:]], y, batch_size=40, verbose=0)


def test_gradient_norms_refuse_the_models_with_other_terms():
    with pytest.raises(TypeError, match="whose loss has other terms"):
        metrics.predictor_gradient_norms(make_auction(), x[:8], y[:8])
