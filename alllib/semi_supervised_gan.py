"""`SemiSupervisedGAN`: the discriminator becomes the classifier (Salimans et al. 2016).

It outputs K class logits `l`; "generated" is a (K+1)-th class whose logit is fixed at 0, so the
chance that an image is real is `Z / (Z + 1)` with `Z = sum_k exp(l_k)`. A round:
1. the discriminator learns the classes of the labelled images of the batch (cross-entropy over
   the K classes), and real against generated on all of them (label -1 marks an unlabeled image,
   `alllib.data.UNLABELED`);
2. the generator moves the mean of the discriminator's features on its images toward their mean
   on the real batch (feature matching) rather than trying to fool it.
"""

import keras
from keras import ops

from alllib import checks
from alllib.data import UNLABELED
from alllib.duel import Duel, Player
from alllib.label_learner import _correct


@keras.saving.register_keras_serializable(package="alllib")
class SemiSupervisedGAN(Duel):
    """A (K+1)-class discriminator and a feature-matching generator, trained by `fit(x, y)`.

    Args:
        generator: a Keras model mapping `(batch, latent_dim)` noise to images.
        discriminator: a Keras model mapping images to `[class logits (batch, K), features
            (batch, F)]` (`nets.semi_supervised_discriminator`).
        latent_dim: size of the noise vector.
        num_classes: K; labels lie in [0, K), or are -1 for an unlabeled image.
        unsupervised_weight: weight of the real-against-generated term in the discriminator's
            loss (the paper's is 1).
        seed: as in `Duel`.

    `call` and `predict` give the discriminator's class probabilities; `evaluate` its accuracy.
    Feed few labels with `alllib.data.few_label_batches`, which puts as many labelled images as
    unlabeled ones in every batch."""

    def __init__(self, generator, discriminator, latent_dim, num_classes, unsupervised_weight=1.0,
                 seed=None, **kwargs):
        super().__init__(
            [Player("discriminator", discriminator, "d"), Player("generator", generator, "g")],
            logs=("accuracy", "d_real", "d_fake"), seed=seed, **kwargs)
        self.latent_dim = checks.integer("latent_dim", latent_dim, 1)
        self.num_classes = checks.integer("num_classes", num_classes, 2)
        self.unsupervised_weight = checks.number("unsupervised_weight", unsupervised_weight)
        self._check_networks()

    def discriminator_objective(self, real, labels, labelled, fake):
        """Step 1: cross-entropy on the labelled images, plus real against generated."""
        real_logits, _ = self._outputs(real)
        fake_logits, _ = self._outputs(fake)
        ce = ops.sparse_categorical_crossentropy(ops.maximum(labels, 0), real_logits,
                                                 from_logits=True)
        supervised = ops.sum(labelled * ce) / ops.maximum(ops.sum(labelled), 1.0)
        # -log D(real) = softplus(-log Z), -log(1 - D(fake)) = softplus(log Z), averaged.
        real_z, fake_z = ops.logsumexp(real_logits, axis=-1), ops.logsumexp(fake_logits, axis=-1)
        unsupervised = 0.5 * (ops.mean(ops.softplus(-real_z)) + ops.mean(ops.softplus(fake_z)))
        return supervised + self.unsupervised_weight * unsupervised, (real_logits, real_z, fake_z)

    def generator_objective(self, real, noise):
        """Step 2, feature matching: the squared distance between the batches' mean features."""
        _, real_features = self._outputs(real)
        _, fake_features = self._outputs(self.generator(noise, training=True))
        gap = ops.mean(ops.stop_gradient(real_features), axis=0) - ops.mean(fake_features, axis=0)
        return ops.mean(ops.square(gap)), ()

    def play_round(self, data):
        x, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        checks.no_batch_weights(type(self).__name__, sample_weight)
        if labels is None:
            raise ValueError(_NEEDS_LABELS)
        real, labels = ops.convert_to_tensor(x), checks.label_batch(labels)
        labelled = ops.cast(labels != UNLABELED, "float32")
        batch_size = ops.shape(real)[0]
        fake = ops.stop_gradient(self.generator(self.sample_latent(batch_size), training=True))
        real_logits, real_z, fake_z = self.move(
            "discriminator", lambda: self.discriminator_objective(real, labels, labelled, fake))
        noise = self.sample_latent(batch_size)
        self.move("generator", lambda: self.generator_objective(real, noise))
        return {"accuracy": (_correct(real_logits, labels), labelled),
                "d_real": ops.mean(ops.sigmoid(real_z)),
                "d_fake": ops.mean(ops.sigmoid(fake_z))}

    def _outputs(self, images, training=True):
        logits, features = self.discriminator(images, training=training)
        return ops.cast(logits, "float32"), ops.cast(features, "float32")

    def sample_latent(self, batch_size):
        return keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)

    def call(self, x, training=False):
        """The class probabilities: a softmax over the K real classes' logits."""
        return ops.softmax(self._outputs(x, training)[0], axis=-1)

    def generate(self, n, seed=None):
        """`n` generated images as a float32 NumPy array (the same ones for the same `seed`)."""
        noise = keras.random.normal((checks.integer("n", n, 1), self.latent_dim),
                                    seed=self.seed_generator if seed is None else seed)
        return ops.convert_to_numpy(ops.cast(self.generator(noise, training=False), "float32"))

    def compile(self, d_optimizer=None, g_optimizer=None, **kwargs):
        """`Duel.compile` with each player's optimizer; the losses are fixed by the method."""
        kwargs = checks.fixed_game("SemiSupervisedGAN plays Salimans et al.'s game (its one "
                                   "weight is the constructor's `unsupervised_weight`)", kwargs)
        super().compile(d_optimizer=d_optimizer, g_optimizer=g_optimizer, **kwargs)

    def evaluate_batch(self, data):
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels = checks.label_batch(labels)
        logits, _ = self._outputs(ops.convert_to_tensor(x), training=False)
        accuracy = self._trackers["accuracy"]
        accuracy.update_state(_correct(logits, labels),
                              sample_weight=ops.cast(labels != UNLABELED, "float32"))
        return {"accuracy": accuracy.result()}

    inputs_name = "images"

    def check_data(self, x, y, x_name, y_name):
        """Finite float images shaped like the generator's output, and one label per image in
        [0, K) or -1 (unlabeled)."""
        if y is None:
            raise ValueError(_NEEDS_LABELS)
        checks.generator_samples(x_name, x, self._image_shape, what="images")
        y = checks.labels(y_name, y, self.num_classes, unlabeled=True)
        checks.inputs_with_labels(x_name, x, y_name, y)

    def check_stream(self, data, name):
        return checks.streamed_labels(data, name, self.num_classes, unlabeled=True)

    def _check_networks(self):
        """One eager pass on a probe batch, so shape mistakes fail here, clearly."""
        images = checks.called("generator", lambda: self.generator(ops.zeros((2, self.latent_dim))),
                               f"a noise batch of shape (2, {self.latent_dim})")
        what = f"the generator's output of shape {tuple(images.shape)}"
        outputs = checks.called("discriminator", lambda: self.discriminator(images), what)
        if not isinstance(outputs, (list, tuple)) or len(outputs) != 2:
            raise ValueError("The discriminator must return two outputs, [class logits (batch, "
                             "num_classes), features (batch, F)] (nets.semi_supervised_"
                             f"discriminator); it returned {_describe(outputs)}.")
        logits, features = outputs
        if tuple(logits.shape) != (2, self.num_classes) or len(features.shape) != 2:
            raise ValueError(
                f"The discriminator's outputs must have shapes (batch, num_classes) = (2, "
                f"{self.num_classes}) and (batch, F); on {what} they have shapes "
                f"{tuple(logits.shape)} and {tuple(features.shape)}.")
        self._image_shape = tuple(images.shape[1:])

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim,
                "num_classes": self.num_classes, "unsupervised_weight": self.unsupervised_weight}


_NEEDS_LABELS = ("SemiSupervisedGAN needs labels: call fit(x, y) or evaluate(x, y), with -1 "
                 "(alllib.data.UNLABELED) for every image seen without its class.")


def _describe(outputs):
    if isinstance(outputs, (list, tuple)):
        return f"{len(outputs)} outputs"
    if hasattr(outputs, "shape"):
        return f"one output of shape {tuple(outputs.shape)}"
    return f"a {type(outputs).__name__}"
