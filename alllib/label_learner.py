"""`AdversarialLabelLearner`: the essay's idea as a Keras model.

A predictor maps inputs to class-probability vectors. A discriminator looks at a label vector
and says whether it is a real (softened, randomized) ground-truth label or a prediction. One
`train_step` is one round:
1. the discriminator trains on real targets (label real) against the predictor's current
   outputs (label fake);
2. the predictor trains through the discriminator, whose weights are not updated, to make its
   outputs pass as real, plus `ce_weight` times the ordinary cross-entropy (the hybrid). The
   discriminator runs in training mode here too, so its layer state (BatchNorm statistics, the
   power-iteration vector of `SpectralDense`) may advance, as in a GAN's generator step.

With `conditional=False` (the essay's version) the discriminator sees the label vector alone;
with `conditional=True` it sees the pair `[x, label_vector]` and can tell which class is right.
"""

import keras
import numpy as np
from keras import ops

from alllib import backend, checks, losses
from alllib.duel import Duel, Player, global_norm
from alllib.metrics import CalibrationError
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
        discriminator: a Keras model returning one score per example, `(batch, 1)`, called on
            the label vector (`conditional=False`) or on `[x, label_vector]` (`conditional=True`).
        num_classes: number of classes K; labels are integers in [0, K).
        conditional: whether the discriminator also sees the input.
        targets: an `alllib.SoftTargets`, how real label vectors are drawn (default: smoothing
            0.1 with Dirichlet noise of concentration 50).
        ce_weight: weight of the cross-entropy term in the predictor's loss; 0 is pure
            adversarial learning.
        seed: seed of the model's own random stream (targets, penalty interpolation).
    """

    def __init__(self, predictor, discriminator, num_classes, conditional=False, targets=None,
                 ce_weight=0.0, seed=None, **kwargs):
        super().__init__(
            [Player("discriminator", discriminator, "d"), Player("predictor", predictor, "p")],
            logs=("d_acc", "accuracy"), seed=seed, **kwargs,
        )
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

    @property
    def metrics(self):
        return super().metrics + [self.nll_tracker, self.ece_tracker]

    def call(self, x, training=False):
        return self.predictor(x, training=training)

    def compile(self, d_optimizer=None, p_optimizer=None, **kwargs):
        """Configure training: as `alllib.GAN.compile`, with the predictor in the generator's
        place (`p_optimizer`); the penalty acts on the discriminator's gradient with respect to
        the label vector, and each of `d_steps` discriminator updates draws fresh real targets.
        """
        super().compile(d_optimizer=d_optimizer, p_optimizer=p_optimizer, **kwargs)

    # -- the round ------------------------------------------------------------------------------

    def _scores(self, x, label_vectors, training):
        inputs = [x, label_vectors] if self.conditional else label_vectors
        return self.discriminator(inputs, training=training)

    def discriminator_objective(self, x, real, fake):
        """Real (softened, randomized) label vectors against the predictor's outputs."""
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
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels = checks.label_batch(labels)
        one_hot = ops.one_hot(labels, self.num_classes, dtype="float32")
        # One forward pass of the predictor serves both players: the discriminator trains on
        # its outputs as constants, and the predictor's move differentiates through it later
        # (its weights do not change in between, so this is the round with two passes, cheaper).
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

    # -- evaluation ---------------------------------------------------------------------------

    def test_step(self, *args):
        return backend.test_step(self, self._evaluate_batch, args)

    def _evaluate_batch(self, data):
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels = checks.label_batch(labels)
        probs = ops.cast(self.predictor(x, training=False), "float32")
        one_hot = ops.one_hot(labels, self.num_classes, dtype="float32")
        accuracy = self._trackers["accuracy"]
        accuracy.update_state(_correct(probs, labels))
        self.nll_tracker.update_state(cross_entropy(one_hot, probs))
        self.ece_tracker.update_state(labels, probs)
        return {t.name: t.result() for t in (accuracy, self.nll_tracker, self.ece_tracker)}

    def gradient_norms(self, x, y):
        """Norms of the predictor's gradient from each term of its loss, on one batch.

        Returns a dict with `adversarial` and `ce` (the latter already scaled by `ce_weight`),
        and `adversarial_share = adversarial / (adversarial + ce)`: how much of the hybrid's
        push comes from the discriminator. Runs eagerly, in inference mode, and changes nothing.
        """
        self._check_data(x, y, "x", "y")
        one_hot = ops.one_hot(ops.convert_to_tensor(np.reshape(y, -1), "int32"), self.num_classes)
        x = ops.convert_to_tensor(x)
        norms = {}
        for term in ("adversarial", "ce"):
            def objective(term=term):
                probs = ops.cast(self.predictor(x, training=False), "float32")
                adversarial, ce = self.predictor_terms(x, one_hot, probs, training=False)
                return (adversarial if term == "adversarial" else self.ce_weight * ce), ()

            _, _, grads = backend.gradients(objective, self.predictor.trainable_variables)
            norms[term] = float(ops.convert_to_numpy(global_norm(grads)))
        total = norms["adversarial"] + norms["ce"]
        norms["adversarial_share"] = norms["adversarial"] / total if total else float("nan")
        return norms

    # -- checks that need data: run eagerly before Keras compiles anything ----------------------

    def check_fit_data(self, x, y, validation_data, kwargs):
        self._reject_weights(kwargs, ("sample_weight", "class_weight"))
        self._check_data(x, y, "x", "y")
        if isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2:
            if len(validation_data) == 3:
                self._reject_weights({"validation_data[2]": validation_data[2]},
                                     ("validation_data[2]",))
            self._check_data(*validation_data[:2], "validation_data[0]", "validation_data[1]")

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._reject_weights(kwargs, ("sample_weight",))
        if not kwargs.get("_use_cached_eval_dataset"):  # fit's validation pass: checked in fit
            self._check_data(x, y, "x", "y")
        return super().evaluate(x, y, *args, **kwargs)

    @staticmethod
    def _reject_weights(kwargs, names):
        for name in names:
            if kwargs.get(name) is not None:
                raise ValueError(
                    f"`{name}` is not supported by AdversarialLabelLearner: both players "
                    "weight every example equally."
                )

    def _check_data(self, x, y, x_name, y_name):
        """Validate labels and inputs, then run both networks once on two examples.

        Arrays are checked in full; for a `tf.data.Dataset` the first batch is checked.
        Other inputs (generators, `PyDataset`) are passed through unchecked.
        """
        batch = checks.first_batch(x) if y is None else None
        if batch is not None:
            self._check_arrays(*batch, f"the inputs in `{x_name}`", f"the labels in `{x_name}`")
            return
        if y is None:
            if hasattr(x, "shape"):
                raise ValueError(
                    f"`{y_name}` is missing: the adversarial label learner needs integer class "
                    f"labels in [0, {self.num_classes})."
                )
            return  # a generator or PyDataset: nothing cheap to check without consuming it
        self._check_arrays(np.asarray(x), y, f"`{x_name}`", f"`{y_name}`")

    def _check_arrays(self, x, y, x_name, y_name):
        y = checks.labels(y_name, y, self.num_classes)
        if len(x) != len(y):
            raise ValueError(
                f"{x_name} and {y_name} must have the same length; received {len(x)} and {len(y)}."
            )
        checks.finite(x_name, x)
        self._probe(x[:2])

    def _probe(self, x):
        signature = (tuple(x.shape[1:]), str(x.dtype))
        if signature in self._probed:  # the networks have not changed shape since
            return
        outputs = checks.called("predictor", lambda: self.predictor(x, training=False),
                                f"an input batch of shape {x.shape}")
        probs = ops.convert_to_numpy(ops.cast(outputs, "float32")).astype("float64")
        tolerance = _PROB_TOLERANCE_BY_DTYPE.get(
            keras.backend.standardize_dtype(outputs.dtype), _PROB_TOLERANCE
        )
        if probs.shape != (len(x), self.num_classes):
            raise ValueError(
                f"`predictor` must return probabilities of shape (batch, num_classes) = "
                f"({len(x)}, {self.num_classes}); it returned shape {probs.shape}."
            )
        if probs.min() < -tolerance or np.abs(probs.sum(-1) - 1).max() > tolerance:
            raise ValueError(
                "`predictor` must return probabilities (non-negative, each row summing to 1; "
                "end it with a softmax); its rows sum to "
                f"{np.round(probs.sum(-1), 4).tolist()}, minimum {probs.min():.4g}."
            )
        vectors = ops.convert_to_tensor(probs.astype("float32"))
        if self.conditional:
            inputs = f"[x of shape {x.shape}, label vectors of shape {probs.shape}]"
            hint = "A conditional discriminator takes two inputs, [x, label_vector]."
        else:
            inputs = f"label vectors of shape {probs.shape}"
            hint = "With conditional=False it takes the label vector alone."
        scores = checks.called(
            "discriminator", lambda: self._scores(ops.convert_to_tensor(x), vectors, False),
            f"{inputs} ({hint})",
        )
        checks.one_score_each(scores, len(x), inputs)
        self._probed.add(signature)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "conditional": self.conditional, "ce_weight": self.ce_weight,
                "targets": keras.saving.serialize_keras_object(self.targets)}


def _correct(probs, labels):
    return ops.cast(ops.argmax(probs, axis=-1) == labels, "float32")
