"""`GAN`: the boxing match as a Keras model.

One `train_step` is one round:
1. the discriminator trains on a real batch (label real) and a generated batch (label fake), in
   one update on the mean loss over both halves;
2. the generator trains through the discriminator, whose weights are not touched in this step,
   to make the discriminator call its samples real.

`compile(ema_decay=...)` also keeps an exponential moving average of the generator's weights in a
separate copy, `average_generator`, which `generate` uses; training never reads it.
"""

import keras
import numpy as np
from keras import ops

from alllib import checks, losses
from alllib.backend import SeedGenerator, minimize
from alllib.twoplayer import TwoPlayerModel, global_norm


@keras.saving.register_keras_serializable(package="alllib")
class GAN(TwoPlayerModel):
    """A generator and a discriminator trained against each other by `fit`.

    Args:
        generator: a Keras model mapping a `(batch, latent_dim)` noise batch to samples.
        discriminator: a Keras model mapping samples to one logit per example, `(batch, 1)`.
        latent_dim: size of the noise vector.
        seed: seed of the model's own noise stream (a `keras.random.SeedGenerator`).
        average: whether to keep `average_generator` from the start; `compile(ema_decay=...)`
            creates it when needed, and a saved model records it here, so that loading, even
            with `compile=False`, restores the average.
    """

    players = {"d": "discriminator", "g": "generator"}
    metric_names = ("d_loss", "g_loss", "d_acc", "d_real", "d_fake", "d_grad_norm", "g_grad_norm")

    def __init__(self, generator, discriminator, latent_dim, seed=None, average=False, **kwargs):
        super().__init__(**kwargs)
        latent_dim = checks.integer("latent_dim", latent_dim, 1)
        for arg, network in (("generator", generator), ("discriminator", discriminator)):
            if not isinstance(network, keras.Model):
                raise TypeError(
                    f"`{arg}` must be a keras.Model; received {type(network).__name__}."
                )
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = latent_dim
        self.seed = seed
        self.seed_generator = SeedGenerator(seed)
        self._check_networks()
        if average:
            self.average_generator = _frozen_copy(generator)
        self.built = True

    def _check_networks(self):
        """One eager forward pass on a probe batch, so shape mistakes fail here, clearly."""
        labels = self._probe_labels()
        try:
            samples = self._fake(ops.zeros((2, self.latent_dim)), labels, training=False)
        except Exception as error:
            raise ValueError(
                f"`generator` could not be called on {self._inputs_text('a noise batch', 2)} "
                f"(latent_dim={self.latent_dim}): {error}"
            ) from error
        try:
            scores = self._scores(samples, labels, training=False)
        except Exception as error:
            what = self._inputs_text(f"the generator's output of shape {tuple(samples.shape)}")
            raise ValueError(f"`discriminator` could not be called on {what}: {error}") from error
        self._sample_shape = tuple(samples.shape[1:])
        if tuple(scores.shape) != (2, 1):
            raise ValueError(
                "`discriminator` must return one score (a logit) per example, shape "
                f"(batch, 1); on a batch of 2 it returned shape {tuple(scores.shape)}."
            )

    # What `ConditionalGAN` changes; here `labels` is always None.
    def _fake(self, noise, labels, training, generator=None):
        return (generator or self.generator)(noise, training=training)

    def _scores(self, samples, labels, training):
        return self.discriminator(samples, training=training)

    def _probe_labels(self):
        return None

    def _inputs_text(self, what, batch=None):
        return what if batch is None else f"{what} of shape ({batch}, {self.latent_dim})"

    def call(self, inputs, training=False):
        """The training generator on its inputs: noise (`[noise, labels]` when conditional)."""
        return self.generator(inputs, training=training)

    def compile(
        self,
        d_optimizer=None,
        g_optimizer=None,
        loss="non_saturating",
        penalty=None,
        penalty_weight=10.0,
        d_steps=1,
        label_smoothing=0.0,
        instance_noise=0.0,
        instance_noise_steps=None,
        ema_decay=None,
        **kwargs,
    ):
        """Configure training.

        Args:
            d_optimizer, g_optimizer: one optimizer per player (instances or names).
            loss: a name in `alllib.losses.LOSSES`: `"non_saturating"` (the essay's loop: the
                generator minimises -log D(G(z))), `"minimax"` (Goodfellow's original
                log(1 - D(G(z))), which saturates when the discriminator wins),
                `"wasserstein"`, `"hinge"` or `"least_squares"`.
            penalty: None, `"r1"` or `"gradient_penalty"` (see `alllib.losses.penalty`),
                added to the discriminator's loss with weight `penalty_weight`.
            d_steps: discriminator updates per generator update.
            label_smoothing: one-sided label smoothing of the real targets (logistic losses).
            instance_noise: standard deviation of Gaussian noise added to every input the
                discriminator sees, real and generated (Sonderby et al. 2016), annealed
                linearly to 0 over `instance_noise_steps` rounds (constant if None).
            ema_decay: None, or a number in [0, 1): keep `average_generator`, a copy of the
                generator whose weights follow theirs as an exponential moving average with this
                decay (warmed up as min(decay, (1 + t) / (10 + t)) after t generator steps, so an
                early average is not stuck near the initial weights); its other state (BatchNorm
                statistics) is copied. `generate` uses it. Once made, the average stays with the
                model (saved and loaded with it); compiling again with `ema_decay=None` stops
                updating it. `call` and `predict` use the training weights.
            **kwargs: passed to `keras.Model.compile` (`steps_per_execution`,
                `jit_compile`, `run_eagerly`).
        """
        self._configure_duel(loss, penalty, penalty_weight, d_steps, label_smoothing)
        self.instance_noise = checks.number("instance_noise", instance_noise)
        self.instance_noise_steps = (
            None if instance_noise_steps is None
            else checks.integer("instance_noise_steps", instance_noise_steps, 1)
        )
        self.ema_decay = None if ema_decay is None else checks.number(
            "ema_decay", ema_decay, 0.0, 1.0
        )
        if self.ema_decay is not None and not hasattr(self, "average_generator"):
            self.average_generator = _frozen_copy(self.generator)
        self.g_optimizer, self.d_optimizer = self._compile_players(
            {
                "g_optimizer": (g_optimizer, self.generator),
                "d_optimizer": (d_optimizer, self.discriminator),
            },
            **kwargs,
        )
        self._remember_compile(
            d_optimizer=self.d_optimizer,
            g_optimizer=self.g_optimizer,
            loss=self.loss_name,
            penalty=self.penalty,
            penalty_weight=self.penalty_weight,
            d_steps=self.d_steps,
            label_smoothing=self.label_smoothing,
            instance_noise=self.instance_noise,
            instance_noise_steps=self.instance_noise_steps,
            ema_decay=self.ema_decay,
            **kwargs,
        )

    def check_fit_data(self, x, y, validation_data, kwargs):
        """Real samples `x` (labels, if any, are ignored) must be shaped like the generator's
        output and finite: arrays are checked whole, a `tf.data.Dataset` by its first batch."""
        batch = checks.first_batch(x)
        real, name = (batch[0], "the samples in `x`") if batch else (x, "`x`")
        if hasattr(real, "shape"):
            real = np.asarray(real)
            if tuple(real.shape[1:]) != self._sample_shape:
                raise ValueError(
                    f"{name} must be real samples shaped like the generator's output, "
                    f"(n, {', '.join(map(str, self._sample_shape))}); received shape "
                    f"{real.shape}."
                )
            checks.finite(name, real)

    def sample_latent(self, batch_size):
        """The noise the generator is fed during training."""
        return keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)

    def instance_noise_std(self, round_index):
        """The instance noise's standard deviation at a given round (0-based)."""
        if self.instance_noise_steps is None:
            return ops.convert_to_tensor(self.instance_noise, "float32")
        progress = ops.cast(round_index, "float32") / self.instance_noise_steps
        return self.instance_noise * ops.maximum(1.0 - progress, 0.0)

    def _blur(self, samples, std):
        """Samples as the discriminator sees them: plus instance noise, if any."""
        if not self.instance_noise:
            return samples
        noise = keras.random.normal(ops.shape(samples), seed=self.seed_generator)
        return samples + ops.cast(std * noise, samples.dtype)

    def duel_step(self, data):
        real, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels = self._train_labels(labels)
        batch_size = ops.shape(real)[0]
        std = self.instance_noise_std(self.optimizer.iterations) if self.instance_noise else None

        # Round 1: the discriminator learns real from fake. The generated batch is a constant.
        for _ in range(self.d_steps):
            fake = ops.stop_gradient(
                self._fake(self.sample_latent(batch_size), labels, training=True)
            )
            seen_real, seen_fake = self._blur(real, std), self._blur(fake, std)
            d_loss, (real_scores, fake_scores), d_grads = minimize(
                lambda: self._discriminator_objective(
                    lambda samples, training: self._scores(samples, labels, training),
                    seen_real, seen_fake,
                ),
                self.discriminator.trainable_variables,
                self.d_optimizer,
            )

        # Round 2: sparring. Gradients flow through the discriminator, only the generator moves.
        noise = self.sample_latent(batch_size)

        def generator_objective():
            samples = self._blur(self._fake(noise, labels, training=True), std)
            scores = self._scores(samples, labels, training=True)
            return losses.generator_loss(self.loss_name, scores), ()

        g_loss, _, g_grads = minimize(
            generator_objective, self.generator.trainable_variables, self.g_optimizer
        )
        if self.ema_decay is not None:
            self._update_average()

        return self._record(
            d_loss=d_loss,
            g_loss=g_loss,
            d_acc=losses.discriminator_accuracy(self.loss_name, real_scores, fake_scores),
            d_real=losses.readable_score(self.loss_name, real_scores),
            d_fake=losses.readable_score(self.loss_name, fake_scores),
            d_grad_norm=global_norm(d_grads),
            g_grad_norm=global_norm(g_grads),
        )

    def _train_labels(self, labels):
        return None  # an unconditional GAN ignores labels that come with the data

    def _update_average(self):
        """Move `average_generator` towards the generator: an exponential moving average of the
        weights; other state (BatchNorm statistics) is copied as it is."""
        steps = ops.cast(self.g_optimizer.iterations, "float32")
        decay = ops.minimum(self.ema_decay, (1.0 + steps) / (10.0 + steps))
        pairs = zip(self.average_generator.weights, self.generator.weights)
        for average, current in pairs:
            if current.trainable:
                value = decay * ops.cast(average, "float32") + (1.0 - decay) * ops.cast(
                    current, "float32"
                )
                average.assign(ops.cast(value, average.dtype))
            else:
                average.assign(current)

    def generate(self, n, seed=None, noise=None, averaged=True):
        """`n` samples as a float32 NumPy array (also under mixed precision).

        A given `seed` gives the same samples every time; `noise`, an `(n, latent_dim)` array,
        is used as it is instead (the same samples on every backend). `averaged` uses the moving
        average of the generator when the model keeps one (`compile(ema_decay=...)`), else the
        generator itself; measure the training opponent with `averaged=False`.
        """
        noise = self._generation_noise(n, seed, noise)
        return self._generated(noise, None, averaged)

    def _generation_noise(self, n, seed, noise):
        n = checks.integer("n", n, 1)
        if noise is None:
            return keras.random.normal(
                (n, self.latent_dim), seed=self.seed_generator if seed is None else seed
            )
        noise = np.asarray(noise, "float32")
        if noise.shape != (n, self.latent_dim):
            raise ValueError(
                f"`noise` must have shape (n, latent_dim) = ({n}, {self.latent_dim}); received "
                f"{noise.shape}."
            )
        return ops.convert_to_tensor(noise)

    def _generated(self, noise, labels, averaged):
        use_average = averaged and hasattr(self, "average_generator")
        generator = self.average_generator if use_average else self.generator
        samples = self._fake(noise, labels, training=False, generator=generator)
        return ops.convert_to_numpy(ops.cast(samples, "float32"))

    def get_config(self):
        config = super().get_config()
        config.update(
            generator=keras.saving.serialize_keras_object(self.generator),
            discriminator=keras.saving.serialize_keras_object(self.discriminator),
            latent_dim=self.latent_dim,
            seed=self.seed,
            average=hasattr(self, "average_generator"),
        )
        return config

    @classmethod
    def from_config(cls, config):
        for key in ("generator", "discriminator"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def _frozen_copy(network):
    """A copy of `network` with the same weights, never trained: the moving average's home."""
    copy = keras.models.clone_model(network)
    copy.set_weights(network.get_weights())
    copy.trainable = False
    return copy
