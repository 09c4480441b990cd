"""`GAN`: the boxing match as a Keras model. Each `train_step` is one round, `play_round`:
1. and 2. the discriminator trains on a real batch (label real) and a generated batch (label
   fake), in one update on the mean loss over both halves (`discriminator_objective`);
3. sparring: the generator trains through the untouched discriminator to pass as real
   (`generator_objective`).
`compile(ema_decay=...)` also keeps `average_generator`, a moving average of the generator's
weights, which `generate` uses; training never reads it."""

import keras
import numpy as np
from keras import ops

from alllib import checks, losses
from alllib.duel import Duel, Player


@keras.saving.register_keras_serializable(package="alllib")
class GAN(Duel):
    """A generator and a discriminator trained against each other by `fit`.

    Args:
        generator: a Keras model mapping a `(batch, latent_dim)` noise batch to samples.
        discriminator: a Keras model mapping samples to one logit per example, `(batch, 1)`.
        latent_dim: size of the noise vector.
        seed: as in `Duel`.
        average: keep `average_generator` from the start, as a saved model that has one records,
            so that loading (even with `compile=False`) restores it."""

    def __init__(self, generator, discriminator, latent_dim, seed=None, average=False, **kwargs):
        super().__init__(
            [Player("discriminator", discriminator, "d"), Player("generator", generator, "g")],
            logs=("d_acc", "d_real", "d_fake"), seed=seed, **kwargs,
        )
        self.latent_dim = checks.integer("latent_dim", latent_dim, 1)
        self._check_networks()
        if average:
            self.average_generator = _frozen_copy(generator)

    def discriminator_objective(self, real, fake, labels):
        """Steps 1 and 2: the discriminator's loss on both batches, plus its penalty."""
        real_scores = self._scores(real, labels, training=True)
        fake_scores = self._scores(fake, labels, training=True)
        loss = self.discriminator_loss(real_scores, fake_scores) + self.penalty_term(
            lambda samples, training: self._scores(samples, labels, training), real, fake
        )
        return loss, (real_scores, fake_scores)

    def generator_objective(self, noise, labels, std):
        """Step 3, sparring: the generator's loss through the discriminator's eyes."""
        samples = self._with_instance_noise(self._fake(noise, labels, training=True), std)
        scores = self._scores(samples, labels, training=True)
        return losses.generator_loss(self.loss_fn, scores), ()

    def play_round(self, data):
        real, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels = self._train_labels(labels)
        batch_size = ops.shape(real)[0]
        std = self.instance_noise_std(self.optimizer.iterations) if self.instance_noise else None
        for _ in range(self.d_steps):  # the generated batch is a constant for the discriminator
            noise = self.sample_latent(batch_size)
            fake = ops.stop_gradient(self._fake(noise, labels, training=True))
            seen_real, seen_fake = self._with_instance_noise(real, std), self._with_instance_noise(fake, std)
            real_scores, fake_scores = self.move(
                "discriminator", lambda: self.discriminator_objective(seen_real, seen_fake, labels)
            )
        noise = self.sample_latent(batch_size)  # the discriminator only lends its gradients
        self.move("generator", lambda: self.generator_objective(noise, labels, std))
        if self.ema_decay is not None:
            self._update_average()
        return {
            "d_acc": losses.discriminator_accuracy(self.loss_fn, real_scores, fake_scores),
            "d_real": losses.readable_score(self.loss_fn, real_scores),
            "d_fake": losses.readable_score(self.loss_fn, fake_scores),
        }

    # -- what `ConditionalGAN` changes; here `labels` is always None ------------------------

    def _fake(self, noise, labels, training, generator=None):
        return (generator or self.generator)(noise, training=training)

    def _scores(self, samples, labels, training):
        return self.discriminator(samples, training=training)

    def _train_labels(self, labels):
        return None  # an unconditional GAN ignores labels that come with the data

    def _probe_labels(self):
        return None

    def _inputs_text(self, what, batch=None):
        return what if batch is None else f"{what} of shape ({batch}, {self.latent_dim})"

    def _check_networks(self):
        """One eager forward pass on a probe batch, so shape mistakes fail here, clearly."""
        labels = self._probe_labels()
        samples = checks.called(
            "generator", lambda: self._fake(ops.zeros((2, self.latent_dim)), labels, False),
            f"{self._inputs_text('a noise batch', 2)} (latent_dim={self.latent_dim})",
        )
        what = self._inputs_text(f"the generator's output of shape {tuple(samples.shape)}")
        checks.ends_in_logits(self.discriminator)
        checks.one_score_each(
            checks.called("discriminator", lambda: self._scores(samples, labels, False), what),
            2, what, score="one score (a logit)",
        )
        self._sample_shape = tuple(samples.shape[1:])

    def call(self, inputs, training=False):
        """The training generator on its inputs: noise (`[noise, labels]` when conditional)."""
        return self.generator(inputs, training=training)

    def compile(self, d_optimizer=None, g_optimizer=None, loss="non_saturating", penalty=None,
                penalty_weight=None, d_steps=1, label_smoothing=0.0, instance_noise=0.0,
                instance_noise_steps=None, ema_decay=None, **kwargs):
        """`Duel.compile` (`d_optimizer`, `g_optimizer`, `loss`, `penalty`, ...), and:

        Args:
            instance_noise: std of Gaussian noise added to every input the discriminator sees
                (Sonderby et al. 2016), annealed linearly to 0 over `instance_noise_steps` if set.
            ema_decay: None, or a decay in [0, 1) for `average_generator`, an exponential moving
                average of the generator's weights, warmed up as min(decay, (1 + t) / (10 + t))
                after t generator steps lest it stick near the initial weights. Used by `generate`,
                not `call`/`predict`; saved with the model; `ema_decay=None` stops updating it."""
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
        super().compile(d_optimizer=d_optimizer, g_optimizer=g_optimizer, loss=loss,
                        penalty=penalty, penalty_weight=penalty_weight, d_steps=d_steps,
                        label_smoothing=label_smoothing, **kwargs)
        self.compile_arguments.update({"instance_noise": self.instance_noise,
                                       "instance_noise_steps": self.instance_noise_steps,
                                       "ema_decay": self.ema_decay})

    inputs_name = "samples"

    def _no_evaluation(self, refused):
        return (f"{refused}: its losses on held-out data say little about its samples. Measure "
                "them with alllib.metrics (mode_coverage, a Judge's frechet_distance) or during "
                "fit with callbacks.ImageScores or callbacks.DiscriminatorGap.")

    def check_data(self, x, y, x_name, y_name):
        """Real samples `x` (labels are ignored): floats shaped like the generator's output,
        finite."""
        checks.generator_samples(x_name, x, self._sample_shape)

    def sample_latent(self, batch_size):
        return keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)

    def instance_noise_std(self, round_index):
        """The instance noise's standard deviation at a given round (0-based)."""
        if self.instance_noise_steps is None:
            return ops.convert_to_tensor(self.instance_noise, "float32")
        progress = ops.cast(round_index, "float32") / self.instance_noise_steps
        return self.instance_noise * ops.maximum(1.0 - progress, 0.0)

    def _with_instance_noise(self, samples, std):
        if not self.instance_noise:
            return samples
        noise = keras.random.normal(ops.shape(samples), seed=self.seed_generator)
        return samples + ops.cast(std * noise, samples.dtype)

    def _update_average(self):
        """EMA step of `average_generator`'s weights; its other state (BatchNorm's) is copied."""
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
        """`n` samples as a float32 NumPy array (also under mixed precision). A `seed` gives the
        same samples every time; `noise`, an `(n, latent_dim)` array used as is, on every backend.
        `averaged` uses `average_generator` if any; `averaged=False` gives the training opponent."""
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
        return {**super().get_config(), "latent_dim": self.latent_dim,
                "average": hasattr(self, "average_generator")}


def _frozen_copy(network):
    """A copy of `network` with the same weights, never trained: the moving average's home."""
    copy = keras.models.clone_model(network)
    copy.set_weights(network.get_weights())
    copy.trainable = False
    return copy
