"""Nothing trained is lost, and training that goes wrong says so: saving and resuming, Keras's
checkpoint callbacks, the divergence guard, the early warning and TensorBoard, on both models."""

import warnings

import numpy as np
import pytest

import keras
from keras import layers, ops

import alllib
from alllib import backend, nets
from test_distiller_auction import few_labels, make_auction, make_distiller
from test_gan import LATENT, ring_batch
from test_label_learner import K, blobs, make_learner

ring = ring_batch(512)
x, y = blobs(240)


def gan(**compile_args):
    """A small GAN with an R1 penalty and a learning-rate schedule: state that must survive."""
    keras.utils.set_random_seed(0)
    model = alllib.GAN(nets.mlp_generator(LATENT, width=16), nets.mlp_discriminator(width=16),
                       LATENT, seed=1)
    model.compile(
        d_optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, 100)),
        g_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5), penalty="r1", penalty_weight=0.5,
        steps_per_execution=backend.steps_per_execution(2), **compile_args,
    )
    return model


def learner():
    return make_learner(conditional=True, ce_weight=0.5, seed=3, penalty="gradient_penalty")


def fit_labels(labels):
    return lambda model, **kw: model.fit(x, labels, batch_size=40, shuffle=False, verbose=0, **kw)


MODELS = {
    "gan": (gan, lambda model, **kw: model.fit(ring, batch_size=64, shuffle=False, verbose=0, **kw)),
    "learner": (learner, fit_labels(y)),
    "distiller": (lambda: make_distiller(penalty="r1"), fit_labels(few_labels())),
    "auction": (lambda: make_auction(bidding=True), fit_labels(y)),
}


def state(model):
    """Everything that decides how training continues: weights, optimizer states, noise stream."""
    return [np.array(v) for v in model.weights + model.optimizer.variables] + [
        np.array(model.seed_generator.state)]


# A GPU's float32 sums (cuDNN's and XLA's reductions) may round differently from one run of the
# same program to the next; a CPU's do not. A resume that went wrong differs by far more.
SAME_ON_THIS_DEVICE = {} if alllib.device_name() == "CPU" else {"rtol": 1e-4, "atol": 1e-6}


def assert_same_arrays(a, b):
    """Equal on a CPU; on a GPU equal up to its run-to-run rounding (integers exactly)."""
    a, b = list(a), list(b)
    assert len(a) == len(b)
    for u, v in zip(a, b):
        if SAME_ON_THIS_DEVICE and u.dtype.kind == "f":
            np.testing.assert_allclose(u, v, **SAME_ON_THIS_DEVICE)
        else:
            np.testing.assert_array_equal(u, v)


def assert_same_state(a, b):
    assert_same_arrays(state(a), state(b))


@pytest.mark.parametrize("name", MODELS)
def test_continuing_after_a_reload_equals_never_stopping(name, tmp_path):
    build, fit = MODELS[name]
    stopped = build()
    fit(stopped, epochs=2)
    stopped.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert type(reloaded) is type(stopped) and reloaded.get_compile_config()
    assert_same_state(reloaded, stopped)
    fit(reloaded, epochs=2)

    never_stopped = build()
    fit(never_stopped, epochs=4)
    assert_same_state(reloaded, never_stopped)
    assert int(ops.convert_to_numpy(reloaded.optimizer.iterations)) > 8


def test_reload_restores_the_compile_arguments(tmp_path):
    model = gan(loss="hinge", d_steps=2, instance_noise=0.1, instance_noise_steps=50)
    model.save(tmp_path / "gan.keras")
    reloaded = keras.saving.load_model(tmp_path / "gan.keras", safe_mode=True)
    for attribute in ("loss_name", "penalty", "penalty_weight", "d_steps", "instance_noise",
                      "instance_noise_steps", "latent_dim", "seed"):
        assert getattr(reloaded, attribute) == getattr(model, attribute), attribute
    assert reloaded.d_optimizer is not reloaded.g_optimizer
    assert isinstance(reloaded.d_optimizer.get_config()["learning_rate"], dict)  # the schedule
    assert float(reloaded.g_optimizer.beta_1) == 0.5


class Interrupt(keras.callbacks.Callback):
    """Raise in the middle of an epoch, as a crash or a lost Colab session would."""

    class Raised(Exception):
        pass

    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) >= self.at:
            raise self.Raised()


@pytest.mark.parametrize("name", MODELS)
def test_backup_and_restore_resumes_an_interrupted_fit(name, tmp_path):
    build, fit = MODELS[name]
    backup = str(tmp_path / "backup")
    with pytest.raises(Interrupt.Raised):
        fit(build(), epochs=4, callbacks=[keras.callbacks.BackupAndRestore(backup),
                                          Interrupt(epoch=2, batch=1)])
    resumed = build()  # a fresh process would build the model anew
    epochs_run = []
    counter = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs_run.append(e))
    fit(resumed, epochs=4, callbacks=[keras.callbacks.BackupAndRestore(backup), counter])
    assert epochs_run == [2, 3]  # it went on from the backup of epoch 2, not from scratch

    uninterrupted = build()
    fit(uninterrupted, epochs=4)
    assert_same_state(resumed, uninterrupted)


@pytest.mark.parametrize("name, monitor, mode", [("gan", "d_loss", "min"),
                                                  ("learner", "val_accuracy", "max")])
def test_model_checkpoint_keeps_the_best_epoch(name, monitor, mode, tmp_path):
    build, fit = MODELS[name]
    model = build()
    snapshots = []
    keep = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: snapshots.append(state(model)))
    path = str(tmp_path / "best.keras")
    checkpoint = keras.callbacks.ModelCheckpoint(path, monitor=monitor, mode=mode,
                                                 save_best_only=True)
    extra = {"validation_data": blobs(60, seed=1)} if name == "learner" else {}
    history = fit(model, epochs=5, callbacks=[checkpoint, keep], **extra)
    values = history.history[monitor]
    best = int(np.argmin(values) if mode == "min" else np.argmax(values))
    saved = keras.saving.load_model(path, safe_mode=True)
    for u, v in zip(state(saved), snapshots[best]):
        np.testing.assert_array_equal(u, v)


# -- divergence -----------------------------------------------------------------------------


class Poison(layers.Layer):
    """Identity, except on its `at`-th call in training (1-based): `"output"` divides by zero
    there; `"gradient"` leaves the output as it is but makes its gradient NaN (sqrt at 0)."""

    def __init__(self, at, kind, **kwargs):
        super().__init__(**kwargs)
        self.at, self.kind = at, kind
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")

    def call(self, inputs, training=False):
        if not training:
            return inputs
        self.calls.assign_add(1.0)
        gate = ops.where(ops.equal(self.calls, float(self.at)), 0.0, 1.0)
        if self.kind == "output":
            return inputs / gate
        bump = ops.sqrt(ops.abs(inputs) * gate)  # at the poisoned call: 0, gradient 0/0
        return inputs + (bump - ops.stop_gradient(bump))


def mlp(inputs, outputs, poison=None, softmax=False):
    stack = [keras.Input((inputs,)), layers.Dense(16), layers.ReLU(), layers.Dense(outputs)]
    stack += [Poison(*poison)] if poison else []
    stack += [layers.Softmax()] if softmax else []
    return keras.Sequential(stack)


def poisoned_gan(generator=None, discriminator=None):
    keras.utils.set_random_seed(0)
    model = alllib.GAN(mlp(LATENT, 2, generator), mlp(2, 1, discriminator), LATENT)
    model.compile(d_optimizer="adam", g_optimizer="adam")
    return model


def poisoned_learner(predictor=None, discriminator=None):
    keras.utils.set_random_seed(0)
    model = alllib.AdversarialLabelLearner(mlp(4, K, predictor, softmax=True),
                                           mlp(K, 1, discriminator), K)
    model.compile(d_optimizer="adam", p_optimizer="adam")
    return model


# Calls per round: the GAN's generator 2 (the discriminator's fakes, then its own step), its
# discriminator 3 (real, fake, the generator's step); the learner's predictor 1, its
# discriminator 3. So call 6 of the generator is its own step in round 3, and so on.
# Each case: the model, where the guard must say it stopped, and the players it must name, in
# order (a second one only when the NaN reached both players within the step).
DIVERGENCES = [
    ("generator loss", lambda: poisoned_gan(generator=(6, "output")),
     "epoch 1, step 3 (round 3", ["generator's loss is"]),
    ("generator gradient", lambda: poisoned_gan(generator=(6, "gradient")),
     "epoch 1, step 3 (round 3", ["generator's gradient norm is nan"]),
    ("generator samples reach the discriminator", lambda: poisoned_gan(generator=(5, "output")),
     "epoch 1, step 3 (round 3", ["discriminator's loss is", "generator's"]),
    ("discriminator loss", lambda: poisoned_gan(discriminator=(4, "output")),
     "epoch 1, step 2 (round 2", ["discriminator's loss is", "generator's"]),
    ("learner discriminator loss", lambda: poisoned_learner(discriminator=(7, "output")),
     "epoch 1, step 3 (round 3", ["discriminator's loss is", "predictor's"]),
    ("predictor gradient", lambda: poisoned_learner(predictor=(5, "gradient")),
     "epoch 1, step 5 (round 5", ["predictor's gradient norm is nan"]),
]


def fit_poisoned(model, n=None, **kwargs):
    """Two epochs; by default under a guard that checks every step, to name the round."""
    kwargs.setdefault("callbacks", [alllib.callbacks.DivergenceGuard(every=1)])
    if isinstance(model, alllib.GAN):
        return model.fit(ring[:n], batch_size=64, epochs=2, verbose=0, **kwargs)
    return model.fit(x, y, batch_size=24, epochs=2, verbose=0, **kwargs)


def divergence_message(model, **kwargs):
    with pytest.raises(FloatingPointError) as error:
        fit_poisoned(model, **kwargs)
    return str(error.value)


@pytest.mark.parametrize("build, where, named", [d[1:] for d in DIVERGENCES],
                         ids=[d[0] for d in DIVERGENCES])
def test_divergence_stops_training_naming_the_player_and_step(build, where, named):
    message = divergence_message(build())
    assert f"Training diverged at {where} of its training): the {named[0]}" in message, message
    blamed = [p for p in ("discriminator", "generator", "predictor") if f"the {p}'s" in message]
    if len(named) == 1:
        assert blamed == [named[0].split("'")[0]], message
    else:
        assert f"; the {named[1]}" in message and "so it is the likely origin" in message, message


def test_divergence_in_the_second_epoch_counts_rounds_from_the_start():
    model = poisoned_gan(generator=(2 * 8 + 6, "output"))  # 8 rounds per epoch
    assert "at epoch 2, step 3 (round 11 of its training)" in divergence_message(model)


def test_divergence_inside_chunks_of_steps_names_the_chunk():
    if backend.steps_per_execution(2) == 1:
        pytest.skip("this backend runs one step per call")
    # 5 rounds per epoch in chunks of 2: the last chunk of an epoch is 1 round. The generator's
    # own step of round 8 is epoch 2's third round, in the chunk of rounds 8-9; by the chunk's
    # end the NaN has reached the discriminator too.
    model = poisoned_gan(generator=(2 * 8, "output"))
    model.compile(d_optimizer="adam", g_optimizer="adam", steps_per_execution=2)
    message = divergence_message(model, n=320)
    assert "at epoch 2, steps 3-4 (rounds 8-9 of its training): the " in message
    assert "would narrow it to one round" in message


def test_the_default_guard_checks_every_hundred_steps_and_at_each_epoch_end():
    """`fit`'s own guard names the steps since its last clean check."""
    model = poisoned_gan(generator=(2 * 8 + 6, "output"))  # round 11: epoch 2, step 3
    message = divergence_message(model, callbacks=[])
    assert "at epoch 2, steps 1-8 (rounds 9-16 of its training): the discriminator's" in message
    assert "the generator's" in message and "would narrow it to one round" in message


def test_a_guard_that_checks_every_third_call_names_the_steps_since_its_last_check():
    model = poisoned_gan(generator=(2 * 8, "output"))  # the generator's own step of round 8
    guard = alllib.callbacks.DivergenceGuard(every=3)  # checks after rounds 3, 5 (epoch end), 8
    message = divergence_message(model, n=320, callbacks=[guard])
    assert "at epoch 2, steps 1-3 (rounds 6-8 of its training): the generator's" in message


@pytest.mark.parametrize("build", [lambda: poisoned_gan(discriminator=(4, "output")),
                                   lambda: poisoned_learner(discriminator=(4, "output"))])
def test_terminate_on_nan_reads_the_logged_loss(build):
    model = build()
    history = fit_poisoned(model, callbacks=[keras.callbacks.TerminateOnNaN()])
    assert len(history.history["loss"]) == 1 and not np.isfinite(history.history["loss"][0])
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 2  # stopped at once


def test_a_discriminator_that_wins_outright_is_reported():
    keras.utils.set_random_seed(0)
    model = alllib.GAN(nets.mlp_generator(LATENT, width=16), nets.mlp_discriminator(width=16),
                       LATENT)
    model.compile(d_optimizer=keras.optimizers.Adam(1e-2), g_optimizer=keras.optimizers.SGD(0.0))
    watch = alllib.callbacks.DiscriminatorWins(threshold=0.95, patience=20)
    with pytest.warns(UserWarning, match=r"discriminator is winning outright.*>= 0.95 for the "
                                         r"last 20 steps"):
        model.fit(ring_batch(2048), batch_size=64, epochs=2, verbose=0, callbacks=[watch])
    won = np.array(watch.values["d_acc"]) >= 0.95  # the generator cannot move: D must win
    first = next(i for i in range(19, len(won)) if won[i - 19:i + 1].all())
    assert watch.warned_at == watch.steps[first]

    patient = alllib.callbacks.DiscriminatorWins(threshold=0.95, patience=10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.fit(ring_batch(2048), batch_size=64, epochs=1, verbose=0, callbacks=[patient])
    assert patient.warned_at is None and patient.streak == 32  # won every step, not long enough


# -- TensorBoard ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_tensorboard_logs_every_metric(name, tmp_path):
    tf = pytest.importorskip("tensorflow")
    build, fit = MODELS[name]
    model = build()
    history = fit(model, epochs=2, callbacks=[keras.callbacks.TensorBoard(str(tmp_path))])
    tags = {}
    for path in (tmp_path / "train").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    for key, values in history.history.items():
        np.testing.assert_allclose(tags[f"epoch_{key}"], values, rtol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="the PyTorch backend's noise state")
def test_the_noise_state_stays_on_the_host_on_pytorch():
    """Keras's generator keeps its state on the default device (the GPU) and reads it back at
    every draw; alllib's keeps it on the CPU and draws the same numbers."""
    ours, keras_own = backend.SeedGenerator(7), keras.random.SeedGenerator(7)
    draw = lambda seed: ops.convert_to_numpy(keras.random.normal((4,), seed=seed))
    np.testing.assert_array_equal([draw(ours) for _ in range(3)],
                                  [draw(keras_own) for _ in range(3)])
    with keras.device("meta"):  # a default device other than the CPU, on any machine
        ours, keras_own = backend.SeedGenerator(1), keras.random.SeedGenerator(1)
    assert ours.state.value.device.type == "cpu"
    assert keras_own.state.value.device.type == "meta"


def test_the_device_is_named_on_every_backend():
    """Notebooks print it in their first cell (Keras's `list_devices` fails on PyTorch)."""
    name = alllib.device_name()
    assert name == "CPU" or (name.startswith("GPU (") and name.endswith(")")), name
