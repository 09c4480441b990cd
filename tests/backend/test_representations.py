"""alllib.SemiSupervisedGAN and alllib.EmbeddingMatcher (notebook 07's representation learners) on
the backend in KERAS_BACKEND: a player's move changes only that player and its own optimizer
counts it; saving, loading and continuing equals never stopping (dropout masks included); the
semi-supervised discriminator's loss is the formula in its docstring, and unlabeled images leave
its supervised term alone; the matcher is a softmax over its pair scores, never draws the true
label as a wrong one, and learns a separable problem; mistakes fail before training, naming the
argument. Tiny networks on 8x8 digits, so the file runs in seconds."""

import inspect

import numpy as np
import pytest

import keras
from keras import layers, ops

import alllib
from alllib import checks, data, nets
from alllib.data import UNLABELED
from test_label_learner import blobs
from test_reliability import assert_same_arrays

IMAGE = (8, 8, 1)
LATENT = 8
EMBEDDING = 8
K = 10

images, digits = data.load("digits", n=64, seed=0)
few = digits.copy()
few[16:] = UNLABELED  # 16 labels among 64 images


def make_gan(d_rate=1e-3, g_rate=1e-3, dropout=0.0, unsupervised_weight=1.0, seed=0):
    keras.utils.set_random_seed(seed)
    model = alllib.SemiSupervisedGAN(
        nets.dcgan_generator(LATENT, IMAGE, width=8),
        nets.semi_supervised_discriminator(IMAGE, K, width=8, dropout=dropout),
        LATENT, K, unsupervised_weight=unsupervised_weight, seed=1)
    model.compile(d_optimizer=keras.optimizers.Adam(d_rate),
                  g_optimizer=keras.optimizers.Adam(g_rate, beta_1=0.5))
    return model


def make_matcher(d_rate=1e-3, e_rate=1e-3, seed=0, cls=None, **compile_args):
    keras.utils.set_random_seed(seed)
    model = (cls or alllib.EmbeddingMatcher)(nets.dcgan_encoder(IMAGE, EMBEDDING, width=8),
                                             nets.label_matcher(EMBEDDING, K), K, seed=1)
    model.compile(d_optimizer=keras.optimizers.Adam(d_rate),
                  e_optimizer=keras.optimizers.Adam(e_rate), **compile_args)
    return model


# name: (build(first player's rate, second's), the players in that order, labels to fit)
MODELS = {
    "semi_supervised_gan": (make_gan, ("discriminator", "generator"), few),
    "embedding_matcher": (make_matcher, ("discriminator", "encoder"), digits),
}


def fit(model, labels, epochs=1, batch_size=16):
    return model.fit(images, labels, batch_size=batch_size, epochs=epochs, verbose=0,
                     shuffle=False)


def iterations(optimizer):
    return int(ops.convert_to_numpy(optimizer.iterations))


def trainable(model):
    return {p.name: [np.array(w) for w in p.network.trainable_weights] for p in model.players}


def numpy(tensor):
    return np.asarray(ops.convert_to_numpy(tensor), "float64")


@pytest.mark.parametrize("name, mover", [(name, player) for name, (_, players, _) in
                                         MODELS.items() for player in players])
def test_a_players_move_changes_only_that_player_and_its_optimizer_counts_it(name, mover):
    """Only `mover`'s optimizer has a learning rate (Adam at 0 leaves a weight exactly as it
    was), so any other player's weights that change were moved by `mover`'s move."""
    build, players, labels = MODELS[name]
    model = build(*(1e-2 if player == mover else 0.0 for player in players))
    before = trainable(model)
    fit(model, labels)  # 4 rounds
    after = trainable(model)
    for player in players:
        same = all(np.array_equal(a, b) for a, b in zip(before[player], after[player]))
        assert same == (player != mover), player
    assert iterations(model.optimizer) == 4  # rounds
    for player in model.players:
        assert iterations(player.optimizer) == 4, player.name  # one move each per round
        assert getattr(model, f"{player.prefix}_optimizer") is player.optimizer


def state(model):
    return [np.array(v) for v in model.weights + model.optimizer.variables
            + model.random_states()]


@pytest.mark.parametrize("name", MODELS)
def test_continuing_after_a_reload_equals_never_stopping(tmp_path, name):
    """Weights, both optimizers' moments and step counts, and every random stream: the model's
    noise and (the semi-supervised GAN's discriminator has dropout) the dropout layer's masks,
    which Keras does not save by itself."""
    build, _, labels = MODELS[name]
    dropout = name == "semi_supervised_gan"
    settings = dict(dropout=0.5, unsupervised_weight=0.5) if dropout else {}
    stopped = build(**settings)
    fit(stopped, labels)
    after_one = state(stopped)
    stopped.save(tmp_path / "model.keras")
    reloaded = alllib.load_model(tmp_path / "model.keras", safe_mode=True)
    assert type(reloaded) is type(stopped) and reloaded.num_classes == K
    if dropout:
        assert reloaded.unsupervised_weight == 0.5
        assert len(reloaded.random_states()) == 2  # the model's noise and the dropout's masks
    assert_same_arrays(state(reloaded), after_one)
    fit(reloaded, labels)
    never_stopped = build(**settings)
    fit(never_stopped, labels, epochs=2)
    assert iterations(reloaded.optimizer) == iterations(never_stopped.optimizer) == 8
    assert_same_arrays(state(reloaded), state(never_stopped))
    assert not all(np.array_equal(a, b) for a, b in zip(after_one, state(never_stopped)))


def softplus(z):
    return np.logaddexp(0.0, z)


def logsumexp(logits):
    top = logits.max(1)
    return top + np.log(np.exp(logits - top[:, None]).sum(1))


def sharpened(model, factor=30.0):
    """`model` with its class logits scaled up, so that they differ by more than rounding."""
    head = [layer for layer in model.discriminator.layers if isinstance(layer, layers.Dense)][-1]
    head.kernel.assign(factor * head.kernel.value)
    return model


def test_the_discriminators_loss_is_the_docstrings_formula():
    """Cross-entropy over the K classes on the labelled images only, plus the weight times
    0.5 * (mean softplus(-log Z(real)) + mean softplus(log Z(fake))), Z = sum_k exp(logit_k)."""
    model = sharpened(make_gan(unsupervised_weight=0.5))
    real, fake = images[:12], images[40:52][:, ::-1]  # the "fakes": other digits, flipped
    labels = digits[:12].copy()
    labels[[1, 4, 5, 9]] = UNLABELED
    labelled = (labels != UNLABELED).astype("float32")
    tensor = ops.convert_to_tensor

    def objective(m, x, y, mask, generated=fake):
        loss, aux = m.discriminator_objective(tensor(x), tensor(y.astype("int32")), tensor(mask),
                                              tensor(np.ascontiguousarray(generated)))
        return float(numpy(loss)), aux

    real_logits = numpy(model.discriminator(real, training=False)[0])
    fake_logits = numpy(model.discriminator(np.ascontiguousarray(fake), training=False)[0])
    log_probs = real_logits - logsumexp(real_logits)[:, None]
    kept = labels != UNLABELED
    supervised = -np.mean(log_probs[kept, labels[kept]])
    unsupervised = 0.5 * (np.mean(softplus(-logsumexp(real_logits)))
                          + np.mean(softplus(logsumexp(fake_logits))))
    loss, (logits, real_z, fake_z) = objective(model, real, labels, labelled)
    assert loss == pytest.approx(supervised + 0.5 * unsupervised, rel=1e-4)
    np.testing.assert_allclose(numpy(logits), real_logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(numpy(real_z), logsumexp(real_logits), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(numpy(fake_z), logsumexp(fake_logits), rtol=1e-4, atol=1e-5)
    # no labels at all: the real-against-generated term alone (not a division by zero)
    none = np.full(12, UNLABELED)
    assert objective(model, real, none, np.zeros(12, "float32"))[0] == pytest.approx(
        0.5 * unsupervised, rel=1e-4)

    # the supervised term alone: the unlabeled images change nothing, whatever they show
    only_supervised = sharpened(make_gan(unsupervised_weight=0.0))
    base = objective(only_supervised, real, labels, labelled)[0]
    assert base == pytest.approx(
        -np.mean(numpy(ops.log_softmax(only_supervised.discriminator(real)[0]))[kept, labels[kept]]),
        rel=1e-4)
    labelled_alone = objective(only_supervised, real[kept], labels[kept],
                               np.ones(kept.sum(), "float32"))[0]
    assert base == pytest.approx(labelled_alone, rel=1e-4)
    noise = real.copy()
    noise[~kept] = np.random.default_rng(0).uniform(-1, 1, noise[~kept].shape)
    assert base == pytest.approx(objective(only_supervised, noise, labels, labelled)[0], rel=1e-4)
    # were they counted (as class 0), they would change it
    counted = objective(only_supervised, noise, labels, np.ones(12, "float32"))[0]
    noise_log_probs = numpy(ops.log_softmax(only_supervised.discriminator(noise)[0]))
    assert counted == pytest.approx(
        -np.mean(noise_log_probs[np.arange(12), np.maximum(labels, 0)]), rel=1e-4)
    assert abs(counted - base) > 0.01 * base


def test_the_semi_supervised_gan_predicts_its_discriminators_class_probabilities():
    model = make_gan()
    probs = model.predict(images[:6], verbose=0)
    logits = numpy(model.discriminator(images[:6], training=False)[0])
    expected = np.exp(logits - logsumexp(logits)[:, None])
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


def test_the_matcher_reads_probabilities_from_every_labels_pair_score():
    """A score is the log-odds (K - 1) p / (1 - p) at the loss's optimum, so the probabilities
    are sigmoid(score - log(K - 1)), normalised: their argmax is the scores'."""
    model = make_matcher()
    x = images[:5]
    probs = numpy(model(x))
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    embeddings = numpy(model.encoder(x, training=False)).astype("float32")
    scores = numpy(model.class_scores(ops.convert_to_tensor(embeddings)))
    assert scores.shape == (5, K)
    odds = 1.0 / (1.0 + np.exp(-(scores - np.log(K - 1))))
    expected = odds / odds.sum(1, keepdims=True)
    np.testing.assert_array_equal(probs.argmax(1), scores.argmax(1))
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.predict(x, verbose=0), probs, rtol=1e-4, atol=1e-5)
    # each pair scored on its own, in label-major order: score[i, k] is the pair (x_i, k)'s
    pairs = [np.tile(embeddings, (K, 1)), np.repeat(np.arange(K, dtype="int32"), len(x))]
    one_by_one = numpy(model.discriminator(pairs, training=False)).reshape(K, len(x)).T
    np.testing.assert_allclose(scores, one_by_one, rtol=1e-4, atol=1e-5)
    assert np.ptp(scores, axis=1).min() > 0  # the labels' scores differ, so this can fail


class RecordingMatcher(alllib.EmbeddingMatcher):
    """Keeps the (true, wrong) labels of every call of the matching loss (run eagerly)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.drawn = []

    def matching_objective(self, embeddings, labels, wrong):
        self.drawn.append((np.array(ops.convert_to_numpy(labels)),
                           np.array(ops.convert_to_numpy(wrong))))
        return super().matching_objective(embeddings, labels, wrong)


def test_a_wrong_label_is_never_the_true_one_and_every_other_is_drawn():
    model = make_matcher(cls=RecordingMatcher, run_eagerly=True)
    fit(model, digits, batch_size=32)  # 2 rounds of 32 (eager rounds are slow under JAX)
    batches = [digits[:32], digits[32:]]
    seen = set()
    for labels, wrong in model.drawn:
        seen |= {i for i, batch in enumerate(batches) if np.array_equal(labels, batch)}
        assert wrong.shape == labels.shape and 0 <= wrong.min() and wrong.max() < K
        assert not np.any(wrong == labels)
    assert seen == {0, 1}  # every round's true labels were recorded
    pairs = np.concatenate([np.stack(pair, 1) for pair in model.drawn])
    shifts = set(((pairs[:, 1] - pairs[:, 0]) % K).tolist())
    assert shifts == set(range(1, K))  # drawn among all the other labels
    common = np.bincount(digits).argmax()  # not a fixed function of the true label either
    assert len(set(pairs[pairs[:, 0] == common, 1].tolist())) > 1


def test_the_matcher_learns_a_separable_problem():
    x, y = blobs(240)  # three classes in 4-D
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    encoder = keras.Model(inputs, layers.Dense(EMBEDDING)(inputs), name="encoder")
    model = alllib.EmbeddingMatcher(encoder, nets.label_matcher(EMBEDDING, 3), 3, seed=0)
    model.compile(d_optimizer=keras.optimizers.Adam(1e-2), e_optimizer=keras.optimizers.Adam(1e-2))
    before = model.evaluate(x, y, batch_size=80, verbose=0, return_dict=True)["accuracy"]
    history = model.fit(x, y, batch_size=40, epochs=10, verbose=0)
    accuracy = model.evaluate(x, y, batch_size=80, verbose=0, return_dict=True)["accuracy"]
    assert accuracy > 0.95 and before < 0.8  # chance is 1/3
    predicted = model.predict(x, batch_size=80, verbose=0).argmax(1)
    assert np.mean(predicted == y) == pytest.approx(accuracy, abs=1e-6)
    assert history.history["d_acc"][-1] > 0.9
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_semi_supervised_gan_errors_name_the_argument():
    model = make_gan()
    with pytest.raises(ValueError, match="SemiSupervisedGAN needs labels"):
        model.fit(images, verbose=0)
    before = [np.array(w) for w in model.weights]
    with pytest.raises(ValueError, match="SemiSupervisedGAN needs labels"):
        model.evaluate(images, verbose=0)  # refused before Keras traces (which would empty it)
    with pytest.raises(ValueError, match="`y` must lie in"):
        model.evaluate(images, np.full(len(images), 10, "int32"), verbose=0)
    with pytest.raises(ValueError, match="every example unlabeled"):
        model.evaluate(images, np.full(len(images), UNLABELED, "int32"), verbose=0)
    assert_same_arrays([np.array(w) for w in model.weights], before)
    assert model.generate(4, seed=3).shape == (4, *IMAGE)
    np.testing.assert_array_equal(model.generate(4, seed=3), model.generate(4, seed=3))
    with pytest.raises(ValueError, match=r"`y` must lie in \[0, num_classes\) = \[0, 10\) or -1 "
                                         r"\(unlabeled\); found values from -1 to 10"):
        model.fit(images, np.where(digits == 3, 10, few).astype("int32"), verbose=0)
    with pytest.raises(ValueError, match=r"`y` must lie in .* found values from -2"):
        model.fit(images, np.where(few == UNLABELED, -2, few).astype("int32"), verbose=0)
    with pytest.raises(ValueError, match=r"`x` must be images shaped like the generator's "
                                         r"output, \(n, 8, 8, 1\); received shape \(64, 4, 4, 1\)"):
        model.fit(images[:, ::2, ::2], few, verbose=0)
    with pytest.raises(ValueError, match="`x` and `y` must have the same length"):
        model.fit(images, few[:32], verbose=0)
    with pytest.raises(ValueError, match="The discriminator must return two outputs.*it "
                                         r"returned one output of shape \(2, 1\)"):
        alllib.SemiSupervisedGAN(nets.dcgan_generator(LATENT, IMAGE, width=8),
                                 nets.dcgan_discriminator(IMAGE, width=8), LATENT, K)
    with pytest.raises(ValueError, match=r"\(batch, num_classes\) = \(2, 10\)"):
        alllib.SemiSupervisedGAN(nets.dcgan_generator(LATENT, IMAGE, width=8),
                                 nets.semi_supervised_discriminator(IMAGE, 5, width=8), LATENT, K)
    with pytest.raises(ValueError, match="`num_classes`"):
        alllib.SemiSupervisedGAN(model.generator, model.discriminator, LATENT, 1)
    for game in ({"loss": "hinge"}, {"penalty": "r1"}):
        with pytest.raises(ValueError, match=f"takes no `{next(iter(game))}`"):
            model.compile(d_optimizer="adam", g_optimizer="adam", **game)


def test_embedding_matcher_errors_name_the_argument():
    model = make_matcher()
    with pytest.raises(ValueError, match="`y` marks unlabeled examples"):
        model.fit(images, few, verbose=0)
    with pytest.raises(ValueError, match="`y` marks unlabeled examples"):
        model.evaluate(images, few, verbose=0)
    with pytest.raises(ValueError, match="`y` is missing"):
        model.evaluate(images, verbose=0)
    with pytest.raises(ValueError, match=r"`y` must lie in \[0, num_classes\) = \[0, 10\); "
                                         "found values from 0 to 10"):
        model.fit(images, np.where(digits == 3, 10, digits).astype("int32"), verbose=0)
    with pytest.raises(ValueError, match="`x` and `y` must have the same length"):
        model.fit(images, digits[:32], verbose=0)
    with pytest.raises(ValueError, match="takes no `loss`"):
        model.compile(d_optimizer="adam", e_optimizer="adam", loss="hinge")
    inputs = keras.Input(IMAGE)
    maps = keras.Model(inputs, layers.Conv2D(4, 3, padding="same")(inputs), name="encoder")
    flat = alllib.EmbeddingMatcher(maps, nets.label_matcher(EMBEDDING, K), K)
    flat.compile(d_optimizer="adam", e_optimizer="adam")
    with pytest.raises(ValueError, match=r"`encoder` must return embeddings of shape \(batch, "
                                         r"embedding_dim\); it returned shape \(2, 8, 8, 4\)"):
        flat.fit(images, digits, verbose=0)


def test_unlabeled_examples_are_explained_for_every_batch_of_a_stream():
    """The -1 hint comes from the shared label check, so a stream's batch gets it as arrays do;
    the models that take unlabeled examples are named."""
    def stream():
        yield images[:16], digits[:16]
        yield images[16:32], few[8:24]  # its last 8 are unlabeled

    model = make_matcher()
    with pytest.raises(ValueError, match=r"-1 in the labels of batch 1 of `x` marks unlabeled "
                                         r"examples .*Distiller or a SemiSupervisedGAN"):
        model.fit(stream(), steps_per_epoch=2, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) <= 1
    with pytest.raises(ValueError, match=r"found values from -2 to 9\.$"):  # no hint: -2 is no mark
        model.fit(images, np.where(digits == 3, -2, few), verbose=0)



def test_the_fixed_games_defaults_are_duel_compiles_own():
    """`checks.GAME_DEFAULTS` repeats `Duel.compile`'s defaults (checks cannot import duel);
    this keeps the two from drifting apart."""
    parameters = inspect.signature(alllib.Duel.compile).parameters
    assert {name: parameters[name].default for name in checks.GAME_DEFAULTS} == checks.GAME_DEFAULTS
