"""The backend interface on TensorFlow: `tf.GradientTape`, and `tf.distribute` replicas."""

import keras
import tensorflow as tf

MAX_STEPS_PER_EXECUTION = None


def gradients(loss_fn, variables):
    with tf.GradientTape() as tape:
        loss, aux = loss_fn()
    return loss, aux, tape.gradient(loss, list(variables))


def forward(fn, variables):
    variables = list(variables)
    with tf.GradientTape() as tape:
        outputs = fn()
    return outputs, lambda g: tape.gradient(outputs, variables, output_gradients=g)


def tensor_gradient(loss_fn, tensor, differentiable=False):
    # A tape records its own gradient computation when an outer tape watches it, so the
    # gradient is differentiable whenever an outer tape (the discriminator's step) is recording.
    with tf.GradientTape() as tape:
        tape.watch(tensor)
        loss, aux = loss_fn(tensor)
    return loss, aux, tape.gradient(loss, tensor)


def apply_gradients(optimizer, grads, variables):
    """Under a `tf.distribute` strategy each replica has the gradient of its slice's mean loss, and
    `optimizer.apply` sums the replicas'; dividing by their number first makes the sum the global
    batch's gradient (Keras's own losses scale the loss instead)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1:
        grads = [None if g is None else tf.math.scalar_mul(1.0 / replicas, g) for g in grads]
    optimizer.apply(grads, list(variables))


class SeedGenerator(keras.random.SeedGenerator):
    """Every replica reads the same seed state, so Keras's generator gives each the same noise (a
    GAN on two GPUs sees half the distinct noise); this one offsets the seed by replica index."""

    def next(self, ordered=True):
        seed = super().next(ordered=ordered)
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return seed
        replica = tf.cast(context.replica_id_in_sync_group, seed.dtype)
        return seed + tf.stack([replica * 7919, tf.zeros_like(replica)])  # a prime stride


def separate_replicas():
    return tf.distribute.get_strategy().num_replicas_in_sync


def train_step(model, round_fn, args):
    (data,) = args
    return round_fn(data)


test_step = train_step


def device_name():
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    return f"GPU ({tf.config.experimental.get_device_details(gpus[0]).get('device_name', '?')})"
