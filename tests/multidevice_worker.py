"""Two devices train like one: an epoch on 2 devices with global batch B gives the weights and
the logs of an epoch on 1 device with the same global batch, seed, data and order.

Run by test_multidevice.py under TensorFlow (`tf.distribute.MirroredStrategy` over two logical
CPUs, set up below) and under JAX (`keras.distribution.DataParallel` over two host devices, from
XLA_FLAGS=--xla_force_host_platform_device_count=2). Exits nonzero with a message on failure.

The comparison is about gradient aggregation, so it is made deterministic:
- the optimizers are plain SGD, so gradients summed instead of averaged over the replicas would
  step twice as far (Adam would hide that: its update barely depends on the gradient's scale);
- the GAN's noise is a fixed function of each example, so an example gets the same noise on
  whichever replica it lands. Under TensorFlow every replica draws from its own offset of the
  seed (`alllib.backend.SeedGenerator`; checked below), so random draws cannot match the
  one-device run there; the learner's targets are deterministic (`SoftTargets(0.1, None)`) for
  the same reason. On JAX they do match, so a GAN with random noise is compared too. The random
  paths (gradient penalty, instance noise, random targets) also train on two devices, and must
  give finite results.
"""

import contextlib
import os
import sys
import threading

import numpy as np

BACKEND = os.environ["KERAS_BACKEND"]
if BACKEND == "tensorflow":  # before TensorFlow initialises its devices
    import tensorflow as tf

    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
    # One strategy per process: several share collective-op keys and can mix up their groups.
    STRATEGY = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

import keras
from keras import ops

import alllib
from alllib import nets

LATENT, BATCH, STEPS, CLASSES = 3, 32, 4, 3
TOLERANCE = dict(rtol=1e-5, atol=1e-5)
# Each replica's gradient norm is that of its own half-batch, so those logs differ by design.
COMPARED_LOGS = ("loss", "d_loss", "g_loss", "p_loss", "d_acc", "accuracy", "nll", "ece")


def two_devices():
    """The context every model of the two-device run is built, compiled and trained in."""
    if BACKEND == "tensorflow":
        return STRATEGY.scope()
    if BACKEND == "jax":
        devices = keras.distribution.list_devices()
        if len(devices) != 2:
            sys.exit(f"expected 2 JAX devices (set XLA_FLAGS); found {devices}")
        return keras.distribution.DataParallel(devices=devices).scope()
    sys.exit(f"multi-device training is not supported on {BACKEND!r}")


class ExampleNoiseGAN(alllib.GAN):
    """The k-th noise draw of a round is a fixed function of k and of the real examples, the same
    for an example on any device. The round's state is per thread: MirroredStrategy runs each
    replica's step in a thread of its own."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._round = threading.local()

    def play_round(self, data):
        self._round.real, self._round.draws = data, 0
        return super().play_round(data)

    def sample_latent(self, batch_size):
        self._round.draws += 1
        projection = ops.matmul(self._round.real, ops.ones((2, LATENT)))
        return ops.sin(projection * self._round.draws + 0.3)


def set_weights(*networks):
    rng = np.random.default_rng(0)
    for network in networks:
        network.set_weights(
            [rng.normal(0, 0.5, w.shape).astype("float32") for w in network.get_weights()]
        )


def gan(gan_class=ExampleNoiseGAN, **compile_args):
    generator, discriminator = nets.mlp_generator(LATENT, width=8), nets.mlp_discriminator(width=8)
    set_weights(generator, discriminator)
    model = gan_class(generator, discriminator, LATENT, seed=1)
    model.compile(
        d_optimizer=keras.optimizers.SGD(0.1), g_optimizer=keras.optimizers.SGD(0.1),
        **compile_args,
    )
    return model


def learner(targets=alllib.SoftTargets(0.1, None), **compile_args):
    predictor = nets.mlp_predictor((2,), CLASSES, width=8)
    discriminator = nets.label_discriminator(CLASSES, input_shape=(2,), width=8)
    set_weights(predictor, discriminator)
    model = alllib.AdversarialLabelLearner(
        predictor, discriminator, CLASSES, conditional=True, targets=targets, seed=1
    )
    model.compile(
        d_optimizer=keras.optimizers.SGD(0.1), p_optimizer=keras.optimizers.SGD(0.1),
        **compile_args,
    )
    return model


def train(make_model, context):
    """Build, fit an epoch and evaluate inside `context`; return (weights, logs)."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (BATCH * STEPS, 2)).astype("float32")
    y = rng.integers(0, CLASSES, BATCH * STEPS)
    with context:
        model = make_model()
        if isinstance(model, alllib.GAN):
            history = model.fit(x, batch_size=BATCH, shuffle=False, verbose=0)
            logs = {}
        else:
            history = model.fit(x, y, batch_size=BATCH, shuffle=False, verbose=0)
            logs = model.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
        logs.update({k: v[-1] for k, v in history.history.items()})
        rounds = int(ops.convert_to_numpy(model.optimizer.iterations))
        if rounds != STEPS:
            sys.exit(f"optimizer.iterations counted {rounds} rounds for {STEPS} steps")
    return model.get_weights(), logs


def check_same(name, make_model):
    (one, one_logs), (two, two_logs) = (
        train(make_model, contextlib.nullcontext()), train(make_model, two_devices())
    )
    initial = make_model().get_weights()
    moved = max(np.abs(a - b).max() for a, b in zip(one, initial))
    if moved < 1e-2:
        sys.exit(f"{name}: training barely moved the weights ({moved:.2g}); the check is vacuous")
    for i, (a, b) in enumerate(zip(one, two)):
        if not np.allclose(b, a, **TOLERANCE):
            sys.exit(
                f"{name}: weight {i} differs on 2 devices, max |diff| {np.abs(a - b).max():.3g} "
                f"(training moved weights by up to {moved:.3g})\n1 device: {a.ravel()[:6]}\n"
                f"2 devices: {b.ravel()[:6]}"
            )
    for key in COMPARED_LOGS:
        if key in one_logs and not np.isclose(two_logs[key], one_logs[key], rtol=1e-4, atol=1e-5):
            sys.exit(f"{name}: log {key!r} is {two_logs[key]} on 2 devices, {one_logs[key]} on 1")
    print(f"{name}: same weights and logs on 1 and 2 devices (moved {moved:.3g})")


def check_finite(name, make_model):
    weights, logs = train(make_model, two_devices())
    if not all(np.isfinite(w).all() for w in weights) or not np.isfinite(list(logs.values())).all():
        sys.exit(f"{name}: non-finite weights or logs on 2 devices: {logs}")
    print(f"{name}: trains on 2 devices")


def check_replicas_draw_their_own_noise():
    """Keras's SeedGenerator gives every TensorFlow replica the same numbers; alllib's must not."""
    with STRATEGY.scope():
        generator = alllib.backend.SeedGenerator(0)
        draw = tf.function(lambda: keras.random.normal((4,), seed=generator))
        first, second = STRATEGY.experimental_local_results(STRATEGY.run(draw))
    if np.allclose(first, second):
        sys.exit(f"both replicas drew the same noise: {first} and {second}")
    print("each replica draws its own noise")


def main():
    if BACKEND == "tensorflow":
        check_replicas_draw_their_own_noise()
    check_same("GAN, d_steps=2, R1", lambda: gan(penalty="r1", d_steps=2))
    check_same("learner, d_steps=2, R1", lambda: learner(penalty="r1", d_steps=2))
    if BACKEND == "jax":  # one global program: even the random draws are those of one device
        check_same(
            "GAN, random noise and instance noise, d_steps=2",
            lambda: gan(alllib.GAN, instance_noise=0.1, d_steps=2),
        )
    check_finite(
        "GAN, random noise, gradient penalty, instance noise",
        lambda: gan(alllib.GAN, loss="wasserstein", penalty="gradient_penalty", instance_noise=0.1),
    )
    keras.mixed_precision.set_global_policy("mixed_float16")  # one loss scale per player
    check_finite("GAN under mixed_float16, R1", lambda: gan(alllib.GAN, penalty="r1"))
    keras.mixed_precision.set_global_policy("float32")
    # JAX: the random targets' gamma draws (a rejection loop with a collective inside) now and
    # then deadlock XLA's simulated host devices, so the JAX learner draws only the penalty's.
    targets = alllib.SoftTargets() if BACKEND == "tensorflow" else alllib.SoftTargets(0.1, None)
    check_finite(
        "learner, random targets (TF) and gradient penalty",
        lambda: learner(targets, penalty="gradient_penalty"),
    )


if __name__ == "__main__":
    main()
