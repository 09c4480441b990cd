"""`ConditionalGAN`: the boxing match with a class label on both sides of the ring.

The generator is asked for a class, `generator([noise, labels])`, and the discriminator judges a
sample together with the class it claims, `discriminator([samples, labels])`. The round is
`GAN`'s: the generated half of the discriminator's batch and the generator's own batch use the
labels of the real batch, so every class is generated as often as it occurs in the data.
"""

import keras
import numpy as np
from keras import ops

from alllib import checks
from alllib.gan import GAN


@keras.saving.register_keras_serializable(package="alllib")
class ConditionalGAN(GAN):
    """A class-conditional GAN trained by `fit(x, y)` with integer labels `y` in [0, K).

    Args:
        generator: a Keras model called on `[noise (batch, latent_dim), labels (batch,)]`.
        discriminator: a Keras model called on `[samples, labels (batch,)]`, returning one logit
            per example (`nets.conditional_dcgan_discriminator` uses a projection head).
        latent_dim: size of the noise vector.
        num_classes: number of classes K.
        seed: seed of the model's own noise stream.
    """

    def __init__(self, generator, discriminator, latent_dim, num_classes, seed=None, **kwargs):
        self.num_classes = checks.integer("num_classes", num_classes, 2)
        super().__init__(generator, discriminator, latent_dim, seed=seed, **kwargs)

    def _fake(self, noise, labels, training, generator=None):
        return (generator or self.generator)([noise, labels], training=training)

    def _scores(self, samples, labels, training):
        return self.discriminator([samples, labels], training=training)

    def _probe_labels(self):
        return ops.convert_to_tensor(np.array([0, self.num_classes - 1], "int32"))

    def _inputs_text(self, what, batch=None):
        shape = "" if batch is None else f" of shape ({batch}, {self.latent_dim})"
        return f"[{what}{shape}, labels of shape (2,)]"

    def _train_labels(self, labels):
        if labels is None:
            raise ValueError("ConditionalGAN.fit needs class labels: call fit(x, y).")
        return checks.label_batch(labels)

    def check_data(self, x, y, x_name, y_name):
        """`x` as for `GAN`, and integer labels `y` in [0, num_classes), one per sample."""
        super().check_data(x, y, x_name, y_name)
        y = checks.labels(y_name, y, self.num_classes, explain_unlabeled=True)
        if len(x) != len(y):
            raise ValueError(
                f"{x_name} and {y_name} must have the same length; received {len(x)} and {len(y)}."
            )

    def generate(self, n, labels=None, seed=None, noise=None, averaged=True):
        """`n` samples of the given classes as a float32 NumPy array.

        `labels` is one class for all (an int), one class per sample (`(n,)`), or None for the
        classes in turn, 0, 1, ..., K-1, 0, ... . `seed`, `noise` and `averaged` are as in
        `GAN.generate`.
        """
        n = checks.integer("n", n, 1)
        if labels is None:
            labels = np.arange(n) % self.num_classes
        elif np.ndim(labels) == 0:
            labels = np.full(n, labels)
        labels = checks.labels("`labels`", labels, self.num_classes)
        if len(labels) != n:
            raise ValueError(
                f"`labels` must hold one class per sample, {n}; received {len(labels)}."
            )
        noise = self._generation_noise(n, seed, noise)
        return self._generated(noise, ops.convert_to_tensor(labels.astype("int32")), averaged)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
