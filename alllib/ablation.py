"""GAN fixes measured: configurations as data, trained on the 2-D mixtures, scored by mode coverage.

A configuration is a plain dict of settings (the loss, a penalty, spectral norm, minibatch
standard deviation, discriminator steps, label smoothing, instance noise, each player's learning
rate) that overrides some of `GAN_DEFAULTS` (`configs.configure`), so an ablation is a dict
of dicts, like `experiments.METHODS`. Every run shares the same
MLP players, data, batch size, number of generator steps and cosine learning-rate schedule, and
differs only in its configuration and seed.
"""

import math
import time

import keras
import numpy as np

from alllib import backend, callbacks, checks, data, metrics, nets
from alllib.configs import GAN_DEFAULTS, GAN_FIXES, configure  # noqa: F401 (public names)
from alllib.gan import GAN

# Players: MLPs with 3 hidden layers of 256 ReLU units; 2-D noise, the same dimension as the data.
LATENT_DIM, WIDTH, DEPTH = 2, 256, 3
# For images: the DCGAN players of notebook 01 at width 32, with 64-D noise.
IMAGE_LATENT_DIM, IMAGE_WIDTH = 64, 32


def build_gan(config, steps, seed, input_dim=2, steps_per_execution=1, image_shape=None):
    """The compiled `GAN` for `config` (a dict of `GAN_DEFAULTS` keys) trained for `steps`
    generator steps: both learning rates decay along a cosine to 2% of their start over the run
    (the discriminator's over its `steps * d_steps` updates), and instance noise (if any)
    anneals to zero over the first 60% of the steps. With `image_shape` the players are small
    DCGANs for images of that shape instead of MLPs for `input_dim`-D points (the defaults'
    learning rates are the 2-D ones; images usually want lower)."""
    s = configure(config, GAN_DEFAULTS, "a GAN")
    steps = checks.integer("steps", steps, 1)
    s["d_steps"] = checks.integer("d_steps", s["d_steps"], 1)  # before it sizes a schedule
    keras.utils.set_random_seed(seed)
    options = dict(spectral_norm=s["spectral_norm"], minibatch_std=s["minibatch_std"])
    if image_shape is None:
        latent_dim = LATENT_DIM
        generator = nets.mlp_generator(latent_dim, input_dim, width=WIDTH, depth=DEPTH)
        discriminator = nets.mlp_discriminator(input_dim, width=WIDTH, depth=DEPTH, **options)
    else:
        latent_dim, image_shape = IMAGE_LATENT_DIM, tuple(image_shape)
        generator = nets.dcgan_generator(latent_dim, image_shape, width=IMAGE_WIDTH)
        discriminator = nets.dcgan_discriminator(image_shape, width=IMAGE_WIDTH, **options)
    gan = GAN(generator, discriminator, latent_dim, seed=seed)

    def adam(learning_rate, updates):
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, updates, alpha=0.02)
        return keras.optimizers.Adam(schedule, beta_1=s["beta_1"], beta_2=s["beta_2"])

    gan.compile(
        d_optimizer=adam(s["d_learning_rate"], steps * s["d_steps"]),
        g_optimizer=adam(s["g_learning_rate"], steps),
        loss=s["loss"], penalty=s["penalty"], penalty_weight=s["penalty_weight"],
        d_steps=s["d_steps"], label_smoothing=s["label_smoothing"],
        instance_noise=s["instance_noise"],
        instance_noise_steps=max(1, int(0.6 * steps)) if s["instance_noise"] else None,
        steps_per_execution=steps_per_execution,
    )
    return gan


def train_on_mixture(config, dataset, seed, steps, batch_size=256, callbacks=(), samples=2500,
                     steps_per_execution=1):
    """Train `config` on the `"ring"` or `"grid"` mixture for `steps` generator steps and count
    its modes (VEEGAN protocol, `samples` generated points). Returns `(row, gan)`; the row has
    `modes`, `high_quality`, `success` (1.0 when every mode is captured with more than half of
    the samples high quality) and `seconds` (training wall time).

    An epoch is 100 steps over 100 fresh batches, so `steps` must be below 100 or a multiple
    of 100. `seconds` includes tracing and compiling the model, a few seconds per run.
    `steps_per_execution` > 1 runs that many steps per call into the backend (TensorFlow and
    JAX; PyTorch runs one): faster for these small networks, but callbacks then see one log
    per chunk (see `callbacks.StepHistory`)."""
    steps = checks.integer("steps", steps, 1)
    if steps > 100 and steps % 100:
        raise ValueError(f"`steps` must be below 100 or a multiple of 100; received {steps}.")
    centres, std = data.mixture_modes(dataset)
    steps_per_epoch = min(steps, 100)
    x, _ = data.load(dataset, n=steps_per_epoch * batch_size, seed=seed)
    per_call = backend.steps_per_execution(math.gcd(steps_per_execution, steps_per_epoch))
    gan = build_gan(config, steps, seed, steps_per_execution=per_call)
    start = time.perf_counter()
    if config.get("d_head_start"):
        head_start(gan, x, config["d_head_start"], batch_size)
    gan.fit(x, batch_size=batch_size, epochs=steps // steps_per_epoch, verbose=0,
            callbacks=list(callbacks))
    seconds = time.perf_counter() - start
    coverage = metrics.mode_coverage(gan.generate(samples, seed=seed + 1), centres, std)
    success = coverage["modes"] == len(centres) and coverage["high_quality"] > 0.5
    row = dict(seed=seed, modes=coverage["modes"], high_quality=coverage["high_quality"],
               success=float(success), seconds=seconds)
    return row, gan


def ablation(configs, datasets, seeds, steps, batch_size=256, steps_per_execution=25):
    """Train every configuration on every dataset with every seed (`steps` generator steps
    each; a dict gives each dataset its own budget).

    Returns `(rows, gans)`: rows are dicts with `dataset` and `method` (the configuration's
    name) added; `gans[(dataset, name)]` keeps the first seed's model, for pictures.
    """
    budgets = {d: steps[d] if isinstance(steps, dict) else steps for d in datasets}
    for dataset in datasets:  # check every budget and configuration before hours of runs
        for name, config in configs.items():
            try:
                build_gan(config, budgets[dataset], seed=0)
            except (TypeError, ValueError) as error:
                raise ValueError(f"Configuration {name!r} on {dataset!r}: {error}") from None
    rows, gans = [], {}
    bar = callbacks.RunProgress(len(configs) * len(datasets) * len(seeds))
    for dataset in datasets:
        for name, config in configs.items():
            for seed in seeds:
                row, gan = train_on_mixture(config, dataset, seed, budgets[dataset], batch_size,
                                            steps_per_execution=steps_per_execution)
                rows.append({"dataset": dataset, "method": name, **row})
                gans.setdefault((dataset, name), gan)
                bar.add(1)
    return rows, gans


def head_start(gan, real, steps, batch_size=256):
    """Train `gan`'s discriminator alone for `steps` updates (Adam at its configured learning
    rate, binary cross-entropy) on `real` against the untrained generator's samples, so the
    match starts with a discriminator that already wins. Logistic losses only."""
    steps = checks.integer("d_head_start", steps, 1)
    if not gan.loss_fn.logistic:
        raise ValueError(f"A head start needs a logistic loss; the GAN uses {gan.loss_name!r}.")
    real = np.asarray(real)[: steps * batch_size]
    real = np.resize(real, (steps * batch_size,) + real.shape[1:])  # repeat if short
    fake = gan.generate(len(real), seed=0, averaged=False)  # the one it trained against
    x = np.stack([real.reshape(steps, batch_size, -1), fake.reshape(steps, batch_size, -1)], 1)
    y = np.stack([np.ones((steps, batch_size)), np.zeros((steps, batch_size))], 1)
    discriminator = gan.discriminator
    discriminator.compile(
        optimizer=keras.optimizers.Adam(float(gan.d_optimizer.learning_rate), beta_1=0.5),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    discriminator.fit(x.reshape((-1,) + real.shape[1:]), y.reshape(-1, 1).astype("float32"),
                      batch_size=2 * batch_size, shuffle=False, verbose=0)
