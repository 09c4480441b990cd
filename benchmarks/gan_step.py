"""How fast is `alllib.GAN.fit`? Steps per second next to two hand-written versions of the round.

The configuration is DCGAN-sized MNIST: 28x28x1 images, batch 256, latent 128, the networks of
`alllib.nets.dcgan_generator` / `dcgan_discriminator` (width 64), Adam(2e-4, beta_1=0.5) for
both players, non-saturating loss. Three sides, timed in the same process, interleaved:

- alllib:      `alllib.GAN.fit` on the current Keras backend (KERAS_BACKEND).
- by hand:     the ceiling on the same backend, the round written directly with the same Keras
               networks, so that what alllib adds is separated from the backend's kernels:
               with KERAS_BACKEND=jax one `jax.jit` function (networks through `stateless_call`,
               Adam written out, noise from `jax.random`); with tensorflow one `tf.function`
               (`tf.GradientTape`, two Keras Adams, compiled with XLA when alllib's step is);
               with torch a plain eager loop (`torch.autograd`, `torch.optim.Adam`). On
               TensorFlow also the round as a plain `keras.Model.train_step` run by the same
               `fit` (the keras-io pattern), which separates Keras's loop from alllib's work.
- torch eager: the same networks in `torch.nn` and a plain eager loop: what a user would write
               instead. Needs torch installed.

Data is synthetic (speed does not depend on pixel values) and already on the device each side
uses: on JAX and PyTorch alllib's `fit` gets the batches as backend tensors
(`experiments.device_batches`; `--data numpy` times NumPy input instead, which Keras copies to the
device every step), on TensorFlow NumPy arrays, which its `fit` prefetches. Each timed block ends
with a device synchronisation, none inside it; the first block of each side is a warm-up, and the
median over the repeats is reported with the slowest and fastest.

    KERAS_BACKEND=jax python benchmarks/gan_step.py --steps 10 --repeats 3
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

import keras

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import alllib  # noqa: E402
from alllib import nets  # noqa: E402
from alllib.experiments import device_batches, interleaved_times, rate  # noqa: E402

SHAPE, BATCH, LATENT, LR, BETA_1 = (28, 28, 1), 256, 128, 2e-4, 0.5


def alllib_side(steps, steps_per_execution, jit_compile, on_device):
    """The `fit` to time, and whether its step compiled with XLA (known once it has run)."""
    keras.utils.set_random_seed(0)
    gan = alllib.GAN(nets.dcgan_generator(LATENT, SHAPE), nets.dcgan_discriminator(SHAPE), LATENT)
    gan.compile(
        d_optimizer=keras.optimizers.Adam(LR, beta_1=BETA_1),
        g_optimizer=keras.optimizers.Adam(LR, beta_1=BETA_1),
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    x = np.random.default_rng(0).uniform(-1, 1, (steps, BATCH, *SHAPE)).astype("float32")
    if on_device:
        batches = device_batches(x)

        def run():
            gan.fit(batches(), epochs=1, verbose=0)
    else:
        x = x.reshape((-1, *SHAPE))

        def run():
            gan.fit(x, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)

    run()  # builds the step, so that its jit_compile setting is resolved
    return run, bool(gan.jit_compile)


def tensorflow_side(steps, jit_compile):
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    generator, discriminator = nets.dcgan_generator(LATENT, SHAPE), nets.dcgan_discriminator(SHAPE)
    d_opt = keras.optimizers.Adam(LR, beta_1=BETA_1)
    g_opt = keras.optimizers.Adam(LR, beta_1=BETA_1)
    softplus = tf.math.softplus

    @tf.function(jit_compile=jit_compile)
    def step(real):
        fake = generator(tf.random.normal((BATCH, LATENT)), training=True)
        with tf.GradientTape() as tape:
            r, f = discriminator(real, training=True), discriminator(fake, training=True)
            d_loss = 0.5 * (tf.reduce_mean(softplus(-r)) + tf.reduce_mean(softplus(f)))
        d_opt.apply(tape.gradient(d_loss, discriminator.trainable_variables),
                    discriminator.trainable_variables)
        with tf.GradientTape() as tape:
            scores = discriminator(generator(tf.random.normal((BATCH, LATENT)), training=True),
                                   training=True)
            g_loss = tf.reduce_mean(softplus(-scores))
        g_opt.apply(tape.gradient(g_loss, generator.trainable_variables),
                    generator.trainable_variables)
        return d_loss, g_loss

    data = tf.constant(
        np.random.default_rng(0).uniform(-1, 1, (steps, BATCH, *SHAPE)).astype("float32")
    )

    def run():
        for i in range(steps):
            losses = step(data[i])
        float(losses[0])  # waits for the last step

    return run


def keras_fit_side(steps):
    """The round by hand as a plain `keras.Model.train_step` (tf.GradientTape, two Keras Adams,
    the keras-io pattern), run by the same `fit`: what Keras's own loop costs, without alllib."""
    import tensorflow as tf

    softplus = tf.math.softplus

    class HandGAN(keras.Model):
        def __init__(self, generator, discriminator):
            super().__init__()
            self.generator, self.discriminator = generator, discriminator

        def compile(self):
            super().compile()
            self.d_opt = keras.optimizers.Adam(LR, beta_1=BETA_1)
            self.g_opt = keras.optimizers.Adam(LR, beta_1=BETA_1)

        def train_step(self, real):
            g, d = self.generator, self.discriminator
            fake = g(tf.random.normal((BATCH, LATENT)), training=True)
            with tf.GradientTape() as tape:
                r, f = d(real, training=True), d(fake, training=True)
                d_loss = 0.5 * (tf.reduce_mean(softplus(-r)) + tf.reduce_mean(softplus(f)))
            self.d_opt.apply(tape.gradient(d_loss, d.trainable_variables), d.trainable_variables)
            with tf.GradientTape() as tape:
                scores = d(g(tf.random.normal((BATCH, LATENT)), training=True), training=True)
                g_loss = tf.reduce_mean(softplus(-scores))
            self.g_opt.apply(tape.gradient(g_loss, g.trainable_variables), g.trainable_variables)
            return {"d_loss": d_loss, "g_loss": g_loss}

    keras.utils.set_random_seed(0)
    model = HandGAN(nets.dcgan_generator(LATENT, SHAPE), nets.dcgan_discriminator(SHAPE))
    model.compile()
    x = np.random.default_rng(0).uniform(-1, 1, (steps * BATCH, *SHAPE)).astype("float32")

    def run():
        model.fit(x, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)

    return run


def keras_torch_side(steps):
    """The round by hand on the torch backend: the same Keras networks, `torch.autograd` and
    `torch.optim.Adam`."""
    import torch

    keras.utils.set_random_seed(0)
    generator, discriminator = nets.dcgan_generator(LATENT, SHAPE), nets.dcgan_discriminator(SHAPE)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    adam = lambda net: torch.optim.Adam(net.parameters(), LR, betas=(BETA_1, 0.999), eps=1e-7)
    g_opt, d_opt = adam(generator), adam(discriminator)
    softplus = torch.nn.functional.softplus
    data = torch.rand(steps, BATCH, *SHAPE, device=device) * 2 - 1

    def run():
        for i in range(steps):
            fake = generator(torch.randn(BATCH, LATENT, device=device), training=True).detach()
            r, f = discriminator(data[i], training=True), discriminator(fake, training=True)
            d_loss = 0.5 * (softplus(-r).mean() + softplus(f).mean())
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            scores = discriminator(
                generator(torch.randn(BATCH, LATENT, device=device), training=True), training=True)
            g_loss = softplus(-scores).mean()
            g_opt.zero_grad(set_to_none=True)
            g_loss.backward()  # also fills the discriminator's grads; cleared before its step
            g_opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return run


def jax_side(steps):
    import jax
    import jax.numpy as jnp

    keras.utils.set_random_seed(0)
    generator, discriminator = nets.dcgan_generator(LATENT, SHAPE), nets.dcgan_discriminator(SHAPE)
    softplus = jax.nn.softplus

    def adam(params, grads, state):
        m, v, t = state
        t = t + 1
        m = [BETA_1 * a + (1 - BETA_1) * g for a, g in zip(m, grads)]
        v = [0.999 * a + 0.001 * g * g for a, g in zip(v, grads)]
        scale = LR * jnp.sqrt(1 - 0.999**t) / (1 - BETA_1**t)
        params = [p - scale * a / (jnp.sqrt(b) + 1e-7) for p, a, b in zip(params, m, v)]
        return params, (m, v, t)

    def d_loss(d_params, d_state, real, fake):
        r, d_state = discriminator.stateless_call(d_params, d_state, real, training=True)
        f, d_state = discriminator.stateless_call(d_params, d_state, fake, training=True)
        return 0.5 * (softplus(-r).mean() + softplus(f).mean()), d_state

    def g_loss(g_params, g_state, d_params, d_state, z):
        images, g_state = generator.stateless_call(g_params, g_state, z, training=True)
        scores, d_state = discriminator.stateless_call(d_params, d_state, images, training=True)
        return softplus(-scores).mean(), (g_state, d_state)

    @jax.jit
    def step(state, real):
        g_p, g_s, d_p, d_s, g_opt, d_opt, key = state
        key, k1, k2 = jax.random.split(key, 3)
        fake, g_s = generator.stateless_call(
            g_p, g_s, jax.random.normal(k1, (BATCH, LATENT)), training=True
        )
        (dl, d_s), grads = jax.value_and_grad(d_loss, has_aux=True)(
            d_p, d_s, real, jax.lax.stop_gradient(fake)
        )
        d_p, d_opt = adam(d_p, grads, d_opt)
        (gl, (g_s, d_s)), grads = jax.value_and_grad(g_loss, has_aux=True)(
            g_p, g_s, d_p, d_s, jax.random.normal(k2, (BATCH, LATENT))
        )
        g_p, g_opt = adam(g_p, grads, g_opt)
        return (g_p, g_s, d_p, d_s, g_opt, d_opt, key), (dl, gl)

    values = lambda vs: [v.value for v in vs]
    zeros = lambda ps: ([jnp.zeros_like(p) for p in ps], [jnp.zeros_like(p) for p in ps], 0)
    g_p, d_p = values(generator.trainable_variables), values(discriminator.trainable_variables)
    state = [
        g_p, values(generator.non_trainable_variables),
        d_p, values(discriminator.non_trainable_variables),
        zeros(g_p), zeros(d_p), jax.random.PRNGKey(0),
    ]
    data = jax.device_put(
        np.random.default_rng(0).uniform(-1, 1, (steps, BATCH, *SHAPE)).astype("float32")
    )

    def run():
        nonlocal state
        for i in range(steps):
            state, losses = step(state, data[i])
        jax.block_until_ready(losses)

    return run


def torch_side(steps):
    import torch
    from torch import nn

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    width = 64
    generator = nn.Sequential(
        nn.Linear(LATENT, 7 * 7 * 2 * width, bias=False), nn.BatchNorm1d(7 * 7 * 2 * width),
        nn.ReLU(), nn.Unflatten(1, (2 * width, 7, 7)),
        nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.ConvTranspose2d(width, 1, 4, 2, 1), nn.Tanh(),
    ).to(device)
    discriminator = nn.Sequential(
        nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(2 * width * 7 * 7, 1),
    ).to(device)
    adam = lambda net: torch.optim.Adam(net.parameters(), LR, betas=(BETA_1, 0.999), eps=1e-7)
    g_opt, d_opt = adam(generator), adam(discriminator)
    bce = nn.functional.binary_cross_entropy_with_logits
    data = torch.rand(steps, BATCH, 1, 28, 28, device=device) * 2 - 1
    ones = torch.ones(BATCH, 1, device=device)
    zeros = torch.zeros(BATCH, 1, device=device)

    def run():
        for i in range(steps):
            fake = generator(torch.randn(BATCH, LATENT, device=device)).detach()
            d_loss = 0.5 * (bce(discriminator(data[i]), ones) + bce(discriminator(fake), zeros))
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            scores = discriminator(generator(torch.randn(BATCH, LATENT, device=device)))
            g_loss = bce(scores, ones)
            g_opt.zero_grad(set_to_none=True)
            g_loss.backward()  # also fills the discriminator's grads; cleared before its step
            g_opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per block")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed blocks per side")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--jit-compile", default="auto", choices=["auto", "true", "false"])
    parser.add_argument("--data", choices=["device", "numpy"], default=None,
                        help="alllib's input: backend tensors (default on JAX and PyTorch) or "
                             "NumPy arrays (default on TensorFlow)")
    args = parser.parse_args()
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]

    backend = keras.backend.backend()
    data = args.data or ("numpy" if backend == "tensorflow" else "device")
    run, xla = alllib_side(args.steps, args.steps_per_execution, jit, data == "device")
    sides = {f"alllib ({backend})": run}
    if backend == "jax":
        sides["jax.jit by hand"] = jax_side(args.steps)
    elif backend == "tensorflow":
        sides["train_step by hand"] = keras_fit_side(args.steps)
        sides["tf.function by hand"] = tensorflow_side(args.steps, xla)
    else:
        sides["torch loop by hand"] = keras_torch_side(args.steps)
    try:
        sides["torch eager"] = torch_side(args.steps)
    except ImportError:
        print("torch is not installed: no eager PyTorch side")

    seconds = interleaved_times(sides, args.repeats)
    ours = np.median(seconds[f"alllib ({backend})"])
    print(f"\nbackend {backend} on {alllib.device_name()}, batch {BATCH}, "
          f"{args.steps} steps x {args.repeats} repeats, median (slowest-fastest); "
          f"steps_per_execution={args.steps_per_execution}, jit_compile={jit} (alllib's step "
          f"compiled with XLA: {xla}); alllib's data: {data}")
    for name, t in seconds.items():
        print(f"  {name:<20} {rate(t, args.steps):>32}   alllib / this = "
              f"{np.median(t) / ours:5.2f}x")


if __name__ == "__main__":
    main()
