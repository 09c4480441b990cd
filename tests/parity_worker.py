"""Train a tiny GAN for a few SGD steps from fixed weights and fixed noise; save the weights.

Run under each backend by test_parity.py. Everything random is fed in from NumPy: the initial
weights, the data, and the noise (the backends' own random streams differ for the same seed).
"""

import sys

import numpy as np

import keras
from keras import ops

import alllib
from alllib import nets

LATENT, BATCH, STEPS = 3, 32, 6


class FedNoiseGAN(alllib.GAN):
    """Noise is a fixed function of a draw counter, identical on every backend."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.draws = keras.Variable(0.0, trainable=False, name="draws")
        rng = np.random.default_rng(7)
        self.phase = rng.uniform(0, 6.3, (BATCH, LATENT)).astype("float32")
        self.freq = rng.uniform(0.5, 2.0, (BATCH, LATENT)).astype("float32")

    def sample_latent(self, batch_size):
        self.draws.assign_add(1.0)
        return ops.sin(self.draws * self.freq + self.phase)


def main(out_path):
    generator = nets.mlp_generator(LATENT, width=8)
    discriminator = nets.mlp_discriminator(width=8)
    rng = np.random.default_rng(0)
    for network in (generator, discriminator):
        network.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in network.get_weights()])
    gan = FedNoiseGAN(generator, discriminator, LATENT)
    gan.compile(d_optimizer=keras.optimizers.SGD(0.1), g_optimizer=keras.optimizers.SGD(0.1))
    x = np.random.default_rng(1).normal(0, 1, (BATCH * STEPS, 2)).astype("float32")
    gan.fit(x, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    np.savez(out_path, *(generator.get_weights() + discriminator.get_weights()))


if __name__ == "__main__":
    main(sys.argv[1])
