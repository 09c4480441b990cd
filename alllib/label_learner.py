"""`AdversarialLabelLearner`: the essay's idea as a Keras model.
A discriminator tells real (softened, randomized) label vectors from a predictor's outputs. In a
round it trains on both, then the predictor trains through it (in training mode, so its layer
state may advance, like a GAN's generator) to pass as real, plus `ce_weight` times the cross-entropy
(the hybrid). A conditional discriminator also sees `x`, so it can tell which class is right."""

import keras
import numpy as np
from keras import ops

from alllib import checks, losses
from alllib.duel import Duel, Player
from alllib.metrics import NLL_FLOOR, CalibrationError
from alllib.targets import SoftTargets

_PROB_TOLERANCE = 1e-3
# bfloat16 keeps 8 significant bits: a softmax's rows sum to 1 only within a few thousandths.
_PROB_TOLERANCE_BY_DTYPE = {"bfloat16": 1e-2}


def cross_entropy(one_hot, probs, eps=1e-7):
    """Per-example cross-entropy from probabilities, clipped at `eps` so log(0) never occurs."""
    return -ops.sum(one_hot * ops.log(ops.clip(probs, eps, 1.0)), axis=-1)


@keras.saving.register_keras_serializable(package="alllib")
class AdversarialLabelLearner(Duel):
    """A predictor trained against a discriminator that judges label vectors.

    Args:
        predictor: a Keras model mapping inputs to probabilities, `(batch, num_classes)`.
        discriminator: a Keras model returning one score per example, `(batch, 1)`.
        num_classes: number of classes K; labels are integers in [0, K).
        conditional: whether the discriminator is called on `[x, label_vector]` rather than on
            the label vector alone (False, the essay's version).
        targets: an `alllib.SoftTargets` drawing the real label vectors (default `SoftTargets()`).
        ce_weight: weight of the cross-entropy in the predictor's loss; 0 is purely adversarial.
        seed: as in `Duel` (its stream draws the targets and the penalty's interpolation)."""

    def __init__(self, predictor, discriminator, num_classes, conditional=False, targets=None,
                 ce_weight=0.0, seed=None, **kwargs):
        super().__init__(
            [Player("discriminator", discriminator, "d"), Player("predictor", predictor, "p")],
            logs=("d_acc", "accuracy"), seed=seed, **kwargs,
        )
        self._set_up(num_classes, conditional, targets, ce_weight)

    def _set_up(self, num_classes, conditional, targets, ce_weight):
        """The settings every label game shares (`Distiller` and `LabelAuction` make their own
        players with `Duel.__init__`, then call this)."""
        self.num_classes = checks.integer("num_classes", num_classes, 2)
        if not isinstance(conditional, bool):
            raise TypeError(f"`conditional` must be True or False; received {conditional!r}.")
        self.conditional = conditional
        self.targets = SoftTargets() if targets is None else targets
        if not isinstance(self.targets, SoftTargets):
            raise TypeError(
                f"`targets` must be an alllib.SoftTargets; received {type(targets).__name__}."
            )
        self.ce_weight = checks.number("ce_weight", ce_weight)
        self.nll_tracker = keras.metrics.Mean(name="nll")
        self.ece_tracker = CalibrationError(name="ece")
        self._probed = set()  # input signatures both networks were checked on

    unlabeled = False  # whether a label of -1 may mark an unlabeled example (`Distiller`)

    @property
    def metrics(self):
        return super().metrics + [self.nll_tracker, self.ece_tracker]

    def call(self, x, training=False):
        return self.predictor(x, training=training)

    def compile(self, d_optimizer=None, p_optimizer=None, **kwargs):
        """`Duel.compile` with `p_optimizer`; the penalty is on the discriminator's gradient with
        respect to the label vector, and each of `d_steps` updates draws fresh real targets."""
        super().compile(d_optimizer=d_optimizer, p_optimizer=p_optimizer, **kwargs)

    def _scores(self, x, label_vectors, training):
        inputs = [x, label_vectors] if self.conditional else label_vectors
        return self.discriminator(inputs, training=training)

    def discriminator_objective(self, x, real, fake):
        real_scores, fake_scores = self._scores(x, real, True), self._scores(x, fake, True)
        loss = self.discriminator_loss(real_scores, fake_scores) + self.penalty_term(
            lambda vectors, training: self._scores(x, vectors, training), real, fake
        )
        return loss, (real_scores, fake_scores)

    def predictor_terms(self, x, one_hot, probs, training):
        """The predictor's adversarial loss and its mean cross-entropy, given its outputs."""
        adversarial = losses.generator_loss(self.loss_fn, self._scores(x, probs, training))
        return adversarial, ops.mean(cross_entropy(one_hot, probs))

    def predictor_objective(self, x, one_hot, probs):
        adversarial, ce = self.predictor_terms(x, one_hot, probs, training=True)
        return (adversarial + self.ce_weight * ce if self.ce_weight else adversarial), ()

    def play_round(self, data):
        x, labels = _tensors(data)
        one_hot = ops.one_hot(labels, self.num_classes, dtype="float32")
        # One predictor pass serves both players (its weights do not change in between, so this
        # equals two passes, cheaper): constants for the discriminator, differentiated later.
        probs, pass_ = self.shared_pass(
            "predictor", lambda: ops.cast(self.predictor(x, training=True), "float32")
        )
        for _ in range(self.d_steps):
            real = self.targets(one_hot, seed=self.seed_generator)
            real_scores, fake_scores = self.move(
                "discriminator", lambda: self.discriminator_objective(x, real, probs)
            )
        self.move("predictor", lambda p: self.predictor_objective(x, one_hot, p), through=pass_)
        return {
            "d_acc": losses.discriminator_accuracy(self.loss_fn, real_scores, fake_scores),
            "accuracy": _correct(probs, labels),
        }

    def evaluate_batch(self, data):
        x, labels = _tensors(data)
        return self.evaluation_logs(x, labels, ops.cast(self.call(x), "float32"))

    def evaluation_logs(self, x, labels, probs, weights=None):
        """Update accuracy, NLL and ECE with `probs` (`weights`: 0 leaves an example out)."""
        one_hot = ops.one_hot(ops.maximum(labels, 0), self.num_classes, dtype="float32")
        accuracy = self._trackers["accuracy"]
        accuracy.update_state(_correct(probs, labels), sample_weight=weights)
        self.nll_tracker.update_state(cross_entropy(one_hot, probs, eps=NLL_FLOOR),
                                      sample_weight=weights)
        self.ece_tracker.update_state(labels, probs, sample_weight=weights)
        return {t.name: t.result() for t in (accuracy, self.nll_tracker, self.ece_tracker)}

    # -- checks that need data: run eagerly before Keras compiles anything ----------------------

    def check_data(self, x, y, x_name, y_name):
        """Integer labels in range, one per finite input; then `_probe` runs the networks.
        `x` may be several inputs (a list or dict of arrays) for a multi-input predictor."""
        y = checks.labels(y_name, y, self.num_classes, self.unlabeled, explain_unlabeled=True)
        leaves = checks.inputs_with_labels(x_name, x, y_name, y)
        if len(leaves) > 1 and self.conditional and self.discriminator is not None:
            raise ValueError(
                f"{x_name} holds {len(leaves)} inputs, but a conditional discriminator takes "
                "[x, label_vector] with one x; use conditional=False with a multi-input predictor.")
        self._probe(keras.tree.map_structure(lambda a: a[:2], x))

    def check_stream(self, data, name):
        return checks.streamed_labels(data, name, self.num_classes, self.unlabeled)

    def probed_predictors(self):
        """`(name, network)` of each network that must map inputs to class probabilities."""
        return [("predictor", self.predictor)]

    def _probe(self, x):
        shapes = keras.tree.map_structure(lambda a: tuple(a.shape), x)
        signature = str(keras.tree.map_structure(lambda a: (a.shape[1:], str(a.dtype)), x))
        if signature in self._probed:  # the networks have not changed shape since
            return
        probs = [self._probed_probs(name, network, x, shapes)
                 for name, network in self.probed_predictors()]
        if self.discriminator is not None:  # it judges the first network's outputs
            self._probe_discriminator(x, shapes, probs[0])
        self._probed.add(signature)

    def _probed_probs(self, name, network, x, shapes):
        n = len(keras.tree.flatten(x)[0])
        outputs = checks.called(name, lambda: network(x, training=False),
                                f"an input batch of shape {shapes}")
        probs = ops.convert_to_numpy(ops.cast(outputs, "float32")).astype("float64")
        tolerance = _PROB_TOLERANCE_BY_DTYPE.get(
            keras.backend.standardize_dtype(outputs.dtype), _PROB_TOLERANCE
        )
        if probs.shape != (n, self.num_classes):
            raise ValueError(
                f"`{name}` must return probabilities of shape (batch, num_classes) = "
                f"({n}, {self.num_classes}); it returned shape {probs.shape}."
            )
        if probs.min() < -tolerance or np.abs(probs.sum(-1) - 1).max() > tolerance:
            raise ValueError(
                f"`{name}` must return probabilities (non-negative, each row summing to 1; "
                "end it with a softmax); its rows sum to "
                f"{np.round(probs.sum(-1), 4).tolist()}, minimum {probs.min():.4g}."
            )
        return probs

    def _probe_discriminator(self, x, shapes, probs):
        vectors = ops.convert_to_tensor(probs.astype("float32"))
        if self.conditional:
            inputs = f"[x of shape {shapes}, label vectors of shape {probs.shape}]"
            hint = "A conditional discriminator takes two inputs, [x, label_vector]."
        else:
            inputs = f"label vectors of shape {probs.shape}"
            hint = "With conditional=False it takes the label vector alone."
        scores = checks.called(
            "discriminator",
            lambda: self._scores(keras.tree.map_structure(ops.convert_to_tensor, x), vectors,
                                 False),
            f"{inputs} ({hint})",
        )
        checks.ends_in_logits(self.discriminator)
        checks.one_score_each(scores, len(probs), inputs)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "conditional": self.conditional, "ce_weight": self.ce_weight,
                "targets": keras.saving.serialize_keras_object(self.targets)}


def _tensors(data):
    """A batch's inputs as tensors and its labels checked; weights refused. Eager JAX hands
    `train_step` NumPy arrays, which a conditional discriminator cannot take in a list with
    tensors."""
    x, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    checks.no_batch_weights("AdversarialLabelLearner", sample_weight)
    return keras.tree.map_structure(ops.convert_to_tensor, x), checks.label_batch(labels)


def _correct(probs, labels):
    return ops.cast(ops.argmax(probs, axis=-1) == labels, "float32")
