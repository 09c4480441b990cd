"""Every public entry point refuses bad input with a message naming the argument, before any
traced code runs: one table, both models."""

import numpy as np
import pytest

import keras
from keras import layers, ops

import alllib
from alllib import data, nets
from test_gan import LATENT, make_gan, ring_batch
from test_label_learner import K, blobs, make_learner
from test_reliability import assert_same_arrays

x, y = blobs(60)
ring = ring_batch(64)
y_late = y.copy()
y_late[50] = K  # out of range in a later batch only: the first batch's check passes


def batches(x, y, size=20):
    """A generator of (x, y) batches, once through."""
    return ((x[i:i + size], y[i:i + size]) for i in range(0, len(x), size))


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y, size=20):
        super().__init__()
        self.x, self.y, self.size = x, y, size

    def __len__(self):
        return -(-len(self.x) // self.size)

    def __getitem__(self, i):
        return self.x[i * self.size:(i + 1) * self.size], self.y[i * self.size:(i + 1) * self.size]


def learner(predictor=None, discriminator=None, num_classes=K, compiled=True, **kwargs):
    model = alllib.AdversarialLabelLearner(
        predictor or nets.mlp_predictor((4,), K), discriminator or nets.label_discriminator(K),
        num_classes, **kwargs,
    )
    if compiled:
        model.compile(d_optimizer="adam", p_optimizer="adam")
    return model


def gan(generator=None, discriminator=None, latent_dim=LATENT):
    return alllib.GAN(
        generator or nets.mlp_generator(LATENT), discriminator or nets.mlp_discriminator(), latent_dim
    )


def compiled_gan(**kwargs):
    model = gan()
    model.compile(d_optimizer="adam", g_optimizer="adam", **kwargs)
    return model


def tf_data(*arrays):
    tf = pytest.importorskip("tensorflow")
    return tf.data.Dataset.from_tensor_slices(arrays).batch(16)


def torch_loader(x, y):
    torch = pytest.importorskip("torch")
    return torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=20)


def frozen_discriminator_gan():
    discriminator = nets.mlp_discriminator()
    discriminator.trainable = False
    gan(discriminator=discriminator).compile(d_optimizer="adam", g_optimizer="adam")


class Blind(keras.Model):
    """A discriminator that ignores its input: no loss through it reaches the other player."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.score = layers.Dense(1)

    def call(self, inputs, training=False):
        return self.score(keras.ops.ones_like(keras.tree.flatten(inputs)[-1][:, :1]))


class Unused(keras.Model):
    """An MLP generator with a layer it never calls."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.net, self.unused = nets.mlp_generator(LATENT), layers.Dense(3)
        self.unused.build((None, LATENT))

    def call(self, z, training=False):
        return self.net(z, training=training)


def built(network, shape):
    network(np.zeros(shape, "float32"))
    return network


def blind_gan(**compile_arguments):
    model = gan(discriminator=Blind())
    model.compile(d_optimizer="adam", g_optimizer="adam", **compile_arguments)
    model.fit(ring, epochs=1, verbose=0)


def scores_per_class(inputs):
    return keras.Sequential([keras.Input(inputs), layers.Dense(2)])


CASES = [
    # -- networks that do not fit together ----------------------------------------------------
    ("GAN: non-positive latent size", lambda: gan(latent_dim=0),
     r"`latent_dim` must be a positive integer; received 0"),
    ("GAN: generator rejects the latent size", lambda: gan(latent_dim=8),
     r"`generator` could not be called on a noise batch of shape \(2, 8\)"),
    ("GAN: discriminator rejects the samples", lambda: gan(discriminator=nets.mlp_discriminator(3)),
     r"`discriminator` could not be called on the generator's output of shape \(2, 2\)"),
    ("GAN: discriminator gives two scores", lambda: gan(discriminator=scores_per_class((2,))),
     r"one score \(a logit\) per example.*returned shape \(2, 2\)"),
    ("GAN: generate nothing", lambda: gan().generate(0),
     "`n` must be a positive integer; received 0"),
    ("GAN: not a model", lambda: alllib.GAN("generator", nets.mlp_discriminator(), LATENT),
     "`generator` must be a keras.Model; received str"),
    ("learner: num_classes below 2", lambda: learner(num_classes=1),
     "`num_classes` must be an integer >= 2; received 1"),
    ("learner: not a model", lambda: learner(predictor="predictor"),
     "`predictor` must be a keras.Model; received str"),
    ("learner: num_classes disagrees with the predictor",
     lambda: learner(nets.mlp_predictor((4,), 5)).fit(x, y), r"shape \(batch, num_classes\) = \(2, 3\); it returned shape \(2, 5\)"),
    ("learner: predictor's input shape", lambda: learner(nets.mlp_predictor((6,), K)).fit(x, y),
     r"`predictor` could not be called on an input batch of shape \(2, 4\)"),
    ("learner: predictor gives no probabilities",
     lambda: learner(keras.Sequential([keras.Input((4,)), layers.Dense(K)])).fit(x, y),
     "must return probabilities .*end it with a softmax"),
    ("learner: discriminator gives two scores",
     lambda: learner(discriminator=scores_per_class((K,))).fit(x, y),
     r"one score per example.*returned shape \(2, 2\)"),
    ("learner: conditional discriminator with one input",
     lambda: learner(conditional=True).fit(x, y), r"two inputs, \[x, label_vector\]"),
    ("learner: negative ce_weight", lambda: learner(ce_weight=-1.0),
     "`ce_weight` must be a non-negative number; received -1.0"),
    ("learner: targets of the wrong type", lambda: learner(targets=0.1),
     "`targets` must be an alllib.SoftTargets; received float"),
    ("SoftTargets: epsilon 1", lambda: alllib.SoftTargets(1.0),
     r"`epsilon` must be a number in \[0, 1\); received 1.0"),
    ("SoftTargets: noise without smoothing", lambda: alllib.SoftTargets(0.0, 10.0),
     "needs `epsilon` > 0"),
    # -- compile ----------------------------------------------------------------------------
    ("GAN: fit before compile", lambda: gan().fit(ring),
     r"GAN.fit\(\) was called before compile\(\); call compile\(d_optimizer=..., g_optimizer=...\)"),
    ("learner: fit before compile", lambda: learner(compiled=False).fit(x, y),
     r"AdversarialLabelLearner.fit\(\) was called before compile\(\); call "
     r"compile\(d_optimizer=..., p_optimizer=...\)"),
    ("GAN: missing optimizer", lambda: gan().compile(g_optimizer="adam"),
     "compile\\(\\) is missing the optimizer argument `d_optimizer`"),
    ("learner: missing optimizer", lambda: learner(compiled=False).compile(d_optimizer="adam"),
     "compile\\(\\) is missing the optimizer argument `p_optimizer`"),
    ("GAN: one optimizer for both", lambda: gan().compile(*[keras.optimizers.Adam()] * 2),
     "`g_optimizer` is the same optimizer instance as `d_optimizer`"),
    ("GAN: unknown loss", lambda: compiled_gan(loss="wgan"), "Unknown adversarial loss 'wgan'"),
    ("learner: unknown loss", lambda: make_learner(loss="wgan"), "Unknown adversarial loss 'wgan'"),
    ("GAN: unknown penalty", lambda: compiled_gan(penalty="gp"), "Unknown penalty 'gp'"),
    ("learner: unknown penalty", lambda: make_learner(penalty="gp"), "Unknown penalty 'gp'"),
    ("GAN: d_steps 0", lambda: compiled_gan(d_steps=0),
     "`d_steps` must be a positive integer; received 0"),
    ("GAN: smoothing a hinge loss", lambda: compiled_gan(loss="hinge", label_smoothing=0.1),
     "`label_smoothing` needs a logistic loss"),
    ("GAN: negative instance noise", lambda: compiled_gan(instance_noise=-1.0),
     "`instance_noise` must be a non-negative number; received -1.0"),
    # -- data -------------------------------------------------------------------------------
    ("GAN: real data of the wrong shape", lambda: make_gan().fit(ring[:, :1], verbose=0),
     r"`x` must be real samples shaped like the generator's output, \(n, 2\); received shape "
     r"\(64, 1\)"),
    ("GAN: real data of the wrong rank", lambda: make_gan().fit(ring[None], verbose=0),
     r"received shape \(1, 64, 2\)"),
    ("GAN: non-finite real data", lambda: make_gan().fit(np.where(ring > 1, np.inf, ring)),
     r"`x` contains \d+ NaN or infinite values"),
    ("GAN: tf.data of the wrong shape", lambda: make_gan().fit(tf_data(ring[:, :1])),
     r"the samples in `x` must be real samples .*received shape \(16, 1\)"),
    ("learner: labels out of range", lambda: make_learner().fit(x, y + 1, verbose=0),
     r"must lie in \[0, num_classes\) = \[0, 3\); found values from 1 to 3"),
    ("learner: negative labels", lambda: make_learner().fit(x, y - 1, verbose=0), "from -1"),
    ("learner: one-hot labels", lambda: make_learner().fit(x, np.eye(K)[y], verbose=0),
     r"`y` must be integer class labels of shape \(n,\) or \(n, 1\); received shape \(60, 3\)"),
    ("learner: float labels", lambda: make_learner().fit(x, y.astype("float32"), verbose=0),
     "`y` must have an integer dtype .*received float32"),
    ("learner: missing labels", lambda: make_learner().fit(x, verbose=0), "`y` is missing"),
    ("learner: inputs and labels disagree in length", lambda: make_learner().fit(x, y[:50]),
     "must have the same length; received 60 and 50"),
    ("learner: non-finite inputs", lambda: make_learner().fit(np.where(x > 3.5, np.nan, x), y),
     r"`x` contains \d+ NaN or infinite values"),
    ("learner: labels in tf.data out of range", lambda: make_learner().fit(tf_data(x, y + 3)),
     r"the labels in `x` must lie in \[0, num_classes\)"),
    ("learner: labels of a generator", lambda: make_learner().fit(
        ((x, np.eye(K)[y]) for _ in range(2)), steps_per_epoch=2, epochs=1, verbose=0),
     r"labels .*must be integer class labels.*\((60|None), 3\)"),
    ("learner: a later tf.data batch out of range",
     lambda: make_learner().fit(tf_data(x, y_late), verbose=0),
     r"the labels of batch 3 of `x` must lie in \[0, num_classes\) = \[0, 3\); found values "
     "from 0 to 3"),
    ("learner: a later generator batch out of range",
     lambda: make_learner().fit(batches(x, y_late), verbose=0), r"labels of batch 2 of `x`"),
    ("learner: a PyDataset batch out of range",
     lambda: make_learner().fit(Batches(x, y_late), verbose=0), r"labels of batch 2 of `x`"),
    ("learner: a DataLoader batch out of range",
     lambda: make_learner().fit(torch_loader(x, y_late), verbose=0), r"labels of batch 2 of `x`"),
    ("learner: a later validation batch out of range",
     lambda: make_learner().fit(x, y, validation_data=tf_data(x, y_late), verbose=0),
     r"labels of batch 3 of `validation_data` must lie in"),
    ("learner: evaluate on a generator with a bad batch",
     lambda: make_learner().evaluate(batches(x, y_late), verbose=0), r"labels of batch 2 of `x`"),
    ("learner: bad evaluate labels", lambda: make_learner().evaluate(x, y + 5, verbose=0),
     r"`y` must lie in \[0, num_classes\)"),
    ("learner: bad validation labels",
     lambda: make_learner().fit(x, y, validation_data=(x, y + 3), verbose=0),
     r"`validation_data\[1\]` must lie in"),
    ("learner: sample weights", lambda: make_learner().fit(x, y, sample_weight=np.ones(60)),
     "`sample_weight` is not supported"),
    ("learner: float labels from a generator", lambda: make_learner().fit(
        ((x[:30], y[:30].astype("float32")) for _ in range(2)), steps_per_epoch=2, verbose=0),
     "labels .*must have an integer dtype .*float32"),
    ("learner: sample weights from a generator", lambda: make_learner().fit(
        ((x[:30], y[:30], np.ones(30)) for _ in range(2)), steps_per_epoch=2, verbose=0),
     r"The data yields sample weights, \(x, y, weights\)"),
    ("learner: sample weights in tf.data",
     lambda: make_learner().fit(tf_data(x, y, np.ones(60, "float32")), verbose=0),
     r"The data yields sample weights"),
    ("learner: validation_data without labels",
     lambda: make_learner().fit(x, y, validation_data=(x,), verbose=0),
     r"`validation_data` must be \(x, y\).*received a tuple of 1"),
    ("learner: empty data", lambda: make_learner().fit(x[:0], y[:0]), r"`x` is empty"),
    ("learner: evaluate on empty data", lambda: make_learner().evaluate(x[:0], y[:0]),
     r"`x` is empty"),
    ("learner: sigmoid discriminator", lambda: learner(discriminator=keras.Sequential(
        [keras.Input((K,)), layers.Dense(1, activation="sigmoid")])).fit(x, y),
     "`discriminator` ends in a sigmoid.*logit"),
    ("learner: compile with metrics",
     lambda: learner(compiled=False).compile(d_optimizer="adam", p_optimizer="adam",
                                             metrics=["accuracy"]),
     r"`metrics` is not supported by AdversarialLabelLearner.compile\(\)"),
    ("learner: compile with one optimizer",
     lambda: learner(compiled=False).compile(optimizer="adam", d_optimizer="adam",
                                             p_optimizer="adam"),
     r"takes one optimizer per player \(d_optimizer=..., p_optimizer=...\), not `optimizer`"),
    ("GAN: compile with one optimizer", lambda: gan().compile(optimizer="adam"),
     r"GAN.compile\(\) takes one optimizer per player \(d_optimizer=..., g_optimizer=...\)"),
    ("GAN: compile with metrics", lambda: compiled_gan(metrics=["accuracy"]),
     r"`metrics` is not supported by GAN.compile\(\)"),
    ("GAN: penalty_weight without a penalty", lambda: compiled_gan(penalty_weight=1.0),
     "`penalty_weight` has no effect without a `penalty`"),
    ("GAN: a frozen discriminator", lambda: frozen_discriminator_gan(),
     "The discriminator has no trainable weights because its `trainable` is False"),
    ("GAN: validation data", lambda: make_gan().fit(ring, validation_data=(ring,)),
     r"GAN.fit\(\) takes no `validation_data` or `validation_split`.*ImageScores"),
    ("GAN: validation split", lambda: make_gan().fit(ring, validation_split=0.2),
     r"GAN.fit\(\) takes no `validation_data`"),
    ("GAN: evaluate", lambda: make_gan().evaluate(ring), "GAN has no `evaluate`"),
    ("GAN: sigmoid discriminator", lambda: gan(discriminator=keras.Sequential(
        [keras.Input((2,)), layers.Dense(8), layers.Dense(1), layers.Activation("sigmoid")])).compile(
            d_optimizer="adam", g_optimizer="adam"),
     "`discriminator` ends in a sigmoid"),
    ("GAN: integer images", lambda: make_gan().fit(np.round(ring * 100).astype("uint8")),
     r"`x` must hold floats on the generator's scale; received dtype uint8.*127.5"),
    ("GAN: empty data", lambda: make_gan().fit(ring[:0]), r"`x` is empty"),
    ("GAN: a discriminator that ignores its input", blind_gan,
     "The generator's loss does not depend on any of its weights.*ignores its input"),
    ("GAN: the same, with a gradient penalty", lambda: blind_gan(penalty="r1"),
     "The generator's loss does not depend on any of its weights"),
    ("learner: a discriminator that ignores its input",
     lambda: learner(discriminator=built(Blind(), (1, K))).fit(x, y, verbose=0),
     "The predictor's loss does not depend on any of its weights"),
    ("data: unknown dataset", lambda: data.load("mnist2"), "Unknown dataset 'mnist2'.*digits"),
    ("data: unknown split", lambda: data.load("digits", split="validation"), "split"),
]


@pytest.mark.parametrize("action, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_explained(action, message):
    with pytest.raises((ValueError, TypeError), match=message):
        action()


def test_a_bad_streamed_batch_stops_training_before_it_is_trained_on():
    """The check runs as the batch is read: the good batches before it have trained, the bad one
    never reaches a step, and the model keeps what it learned. On a GPU, Keras's JAX trainer
    reads one batch ahead, so the check stops it one step earlier."""
    read_ahead = int(keras.backend.backend() == "jax" and alllib.device_name() != "CPU")
    good = make_learner()
    good.fit(batches(x[:40 - 20 * read_ahead], y[:40 - 20 * read_ahead]), verbose=0)
    model = make_learner()
    with pytest.raises(ValueError, match="labels of batch 2 of `x`"):
        model.fit(batches(x, y_late), verbose=0)
    assert int(model.optimizer.iterations) == int(good.optimizer.iterations)
    for a, b in zip(good.predictor.get_weights(), model.predictor.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    model.fit(x, y, epochs=1, verbose=0)  # still usable


@pytest.mark.parametrize("stream", ["generator", "PyDataset", "DataLoader"])
def test_a_stream_without_labels_is_refused_before_a_step_and_the_weights_are_kept(stream):
    """Before, the batch reached the traced step, which failed there ("'NoneType' object has no
    attribute 'shape'"), and on JAX the failed trace wiped the trained weights."""
    model = make_learner()
    model.fit(x, y, epochs=1, verbose=0)
    before = [np.array(w) for w in model.weights]
    unlabelled = {"generator": lambda: ((x[i:i + 20],) for i in range(0, 60, 20)),
                  "PyDataset": lambda: Unlabelled(x),
                  "DataLoader": lambda: torch_inputs_only(x)}[stream]()
    with pytest.raises(ValueError, match=r"the labels of batch 0 of `x` are missing \(the dataset "
                                         r"must yield \(samples, labels\)\): this model trains on "
                                         r"integer class labels in \[0, 3\)"):
        model.fit(unlabelled, verbose=0)
    assert_same_arrays([np.array(w) for w in model.weights], before)


class Unlabelled(keras.utils.PyDataset):
    def __init__(self, x, size=20):
        super().__init__()
        self.x, self.size = x, size

    def __len__(self):
        return -(-len(self.x) // self.size)

    def __getitem__(self, index):
        return (self.x[index * self.size:(index + 1) * self.size],)


def torch_inputs_only(x):
    torch = pytest.importorskip("torch")
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.tensor(x)),
                                       batch_size=20)


def test_weights_a_loss_does_not_reach_are_named():
    generator = Unused()
    generator(np.zeros((1, LATENT), "float32"))
    model = gan(generator=generator)
    model.compile(d_optimizer="adam", g_optimizer="adam")
    before = [w.copy() for w in generator.unused.get_weights()]
    with pytest.warns(UserWarning, match=r"The generator's loss does not reach 2 of its weights "
                                         r"\(.*kernel, .*bias\); they get zero gradients"):
        model.fit(ring, epochs=1, verbose=0)
    for a, b in zip(before, generator.unused.get_weights()):
        np.testing.assert_array_equal(a, b)  # zero gradients, and Adam has no weight decay


def test_labels_streamed_as_backend_tensors_are_checked():
    """Batches that are backend tensors (on the GPU where there is one) train, and a bad batch
    is still caught, the first or a later one: the check reads the labels back to the host."""
    tensors = lambda x, y: ((ops.convert_to_tensor(a), ops.convert_to_tensor(b))
                            for a, b in batches(x, y))
    model = make_learner()
    model.fit(tensors(x, y), verbose=0)
    assert int(model.optimizer.iterations) >= 3  # it trained on the three batches
    y_first = y.copy()
    y_first[5] = K
    with pytest.raises(ValueError, match="labels of batch 0 of `x`"):
        make_learner().fit(tensors(x, y_first), verbose=0)
    with pytest.raises(ValueError, match="labels of batch 2 of `x`"):
        make_learner().fit(tensors(x, y_late), verbose=0)
    one_hot = lambda: ((a, ops.convert_to_tensor(np.eye(K, dtype="int32")[b]) if i else b)
                       for i, (a, b) in enumerate(batches(x, y)))
    with pytest.raises(ValueError, match=r"labels of batch 1 of `x` must be .*shape \(n,\)"):
        make_learner().fit(one_hot(), verbose=0)


class Unreadable(Unlabelled):
    def __getitem__(self, index):
        raise RuntimeError("the disk went away")


@pytest.mark.parametrize("first_batch", ["labels out of range", "an error of its own"])
def test_a_first_batch_that_fails_to_read_leaves_the_trained_weights(first_batch):
    """Keras's JAX trainer empties the variables before it reads a PyDataset's first batch and
    refilled them only from a finished step (backend.state_kept puts them back)."""
    model = make_learner()
    model.fit(x, y, epochs=1, verbose=0)
    before = [np.array(w) for w in [*model.weights, *model.optimizer.variables]]
    stream, error = {"labels out of range": (Batches(x, y + K), r"labels of batch 0 of `x`"),
                     "an error of its own": (Unreadable(x), "the disk went away")}[first_batch]
    with pytest.raises((ValueError, RuntimeError), match=error):
        model.fit(stream, verbose=0)
    assert_same_arrays([np.array(w) for w in [*model.weights, *model.optimizer.variables]], before)
    with pytest.raises((ValueError, RuntimeError), match=error):
        model.evaluate(stream, verbose=0)
    assert_same_arrays([np.array(w) for w in model.weights], before[:len(model.weights)])
    model.fit(x, y, epochs=1, verbose=0)  # still trains


def test_an_evaluation_that_fails_at_a_later_batch_leaves_the_trained_weights():
    """Keras's JAX `evaluate` puts the state back only when every batch was read."""
    model = make_learner()
    model.fit(x, y, epochs=1, verbose=0)
    before = [np.array(w) for w in model.weights]
    with pytest.raises(ValueError, match="labels of batch 2 of `x`"):
        model.evaluate(Batches(x, y_late), verbose=0)
    assert_same_arrays([np.array(w) for w in model.weights], before)
    assert model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"] >= 0


class FailsInEpoch(Batches):
    """(x, y) batches whose first batch fails to read from epoch `epoch` (0-based) on: counted
    by reads of that batch, one per epoch."""

    def __init__(self, x, y, epoch):
        super().__init__(x, y)
        self.first_reads, self.epoch = 0, epoch

    def __getitem__(self, index):
        if index == 0:
            self.first_reads += 1
            if self.first_reads > self.epoch:
                raise RuntimeError("the disk went away")
        return super().__getitem__(index)


@pytest.mark.parametrize("mode", ["compiled", "eager"])
def test_a_later_epoch_that_fails_at_its_first_batch_keeps_the_finished_epochs(mode):
    """After a validation pass Keras's JAX trainer holds no state of its own; the weights put
    back must be the first epoch's, not those from before `fit` (or none)."""
    if keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow never empties the variables, and its tf.data pipeline reads the "
                    "second epoch's first batch during the first epoch")
    model = make_learner()
    model.run_eagerly = mode == "eager"
    with pytest.raises(RuntimeError, match="the disk went away"):
        model.fit(FailsInEpoch(x, y, epoch=1), epochs=2, validation_data=(x, y), shuffle=False,
                  verbose=0)
    steps = int(model.optimizer.iterations)
    assert steps == 3
    same_steps = make_learner()
    same_steps.run_eagerly = model.run_eagerly
    same_steps.fit(Batches(x[:20 * steps], y[:20 * steps]), shuffle=False, verbose=0)
    assert int(same_steps.optimizer.iterations) == steps
    for a, b in zip(same_steps.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_weights_set_after_a_single_batch_step_survive_a_failed_fit():
    """`train_on_batch` leaves Keras's JAX state behind; a failed `fit` must not write it back."""
    model = make_learner()
    model.train_on_batch(x[:20], y[:20])
    halved = [w / 2 for w in model.get_weights()]
    model.set_weights(halved)
    with pytest.raises(RuntimeError, match="the disk went away"):
        model.fit(Unreadable(x), verbose=0)
    assert_same_arrays(model.get_weights(), halved)


def test_a_prediction_that_fails_to_read_keeps_the_weights():
    model = make_learner()
    model.fit(x, y, epochs=1, verbose=0)
    before = model.get_weights()
    with pytest.raises(RuntimeError, match="the disk went away"):
        model.predict(Unreadable(x), verbose=0)
    assert_same_arrays(model.get_weights(), before)
    np.testing.assert_allclose(model.predict(x, verbose=0).sum(-1), 1, rtol=1e-5)


def test_the_unlabeled_hint_is_for_the_labels_a_model_trains_on():
    from alllib import checks
    with pytest.raises(ValueError) as plain:
        checks.labels("`labels`", np.array([-1, 0]), 3)
    assert "unlabeled" not in str(plain.value)
    with pytest.raises(ValueError, match="-1 in `y` marks unlabeled examples"):
        checks.labels("`y`", np.array([-1, 0]), 3, explain_unlabeled=True)


def test_a_batch_failing_inside_an_execution_of_several_steps_says_what_was_lost():
    """The documented limit of `backend.state_kept` on JAX: Keras keeps the state between the
    steps of one execution to itself, so a batch failing there takes it along; the error says so
    instead of leaving a model that fails later on an empty variable."""
    if keras.backend.backend() != "jax":
        pytest.skip("only Keras's JAX trainer empties the variables")
    model = make_learner()
    model.compile(d_optimizer="adam", p_optimizer="adam", steps_per_execution=3)
    model.fit(x, y, batch_size=20, verbose=0)
    with pytest.raises(ValueError, match="labels of batch 2 of `x`") as raised:
        model.fit(Batches(x, y_late), verbose=0)
    assert any("could not be put back" in note and "steps_per_execution" in note
               for note in getattr(raised.value, "__notes__", []))
