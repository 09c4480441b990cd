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

from alllib import checks, losses
from alllib.backend import (
    SeedGenerator, apply, forward, gradients, minimize, run_test_step, scaled, tensor_gradient,
)
from alllib.metrics import CalibrationError
from alllib.targets import SoftTargets
from alllib.twoplayer import TwoPlayerModel, global_norm

_PROB_TOLERANCE = 1e-3
# bfloat16 keeps 8 significant bits: a softmax's rows sum to 1 only within a few thousandths.
_PROB_TOLERANCE_BY_DTYPE = {"bfloat16": 1e-2}


def cross_entropy(one_hot, probs, eps=1e-7):
    """Per-example cross-entropy from probabilities, clipped at `eps` so log(0) never occurs."""
    return -ops.sum(one_hot * ops.log(ops.clip(probs, eps, 1.0)), axis=-1)


@keras.saving.register_keras_serializable(package="alllib")
class AdversarialLabelLearner(TwoPlayerModel):
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

    players = {"d": "discriminator", "p": "predictor"}
    metric_names = ("d_loss", "p_loss", "d_acc", "accuracy", "d_grad_norm", "p_grad_norm")

    def __init__(
        self,
        predictor,
        discriminator,
        num_classes,
        conditional=False,
        targets=None,
        ce_weight=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for arg, network in (("predictor", predictor), ("discriminator", discriminator)):
            if not isinstance(network, keras.Model):
                raise TypeError(
                    f"`{arg}` must be a keras.Model; received {type(network).__name__}."
                )
        num_classes = checks.integer("num_classes", num_classes, 2)
        if not isinstance(conditional, bool):
            raise TypeError(f"`conditional` must be True or False; received {conditional!r}.")
        targets = SoftTargets() if targets is None else targets
        if not isinstance(targets, SoftTargets):
            raise TypeError(
                f"`targets` must be an alllib.SoftTargets; received {type(targets).__name__}."
            )
        ce_weight = checks.number("ce_weight", ce_weight)
        self.predictor = predictor
        self.discriminator = discriminator
        self.num_classes = num_classes
        self.conditional = conditional
        self.targets = targets
        self.ce_weight = float(ce_weight)
        self.seed = seed
        self.seed_generator = SeedGenerator(seed)
        self.nll_tracker = keras.metrics.Mean(name="nll")
        self.ece_tracker = CalibrationError(name="ece")
        self._probed = set()  # input signatures both networks were checked on
        self.built = True

    @property
    def metrics(self):
        return super().metrics + [self.nll_tracker, self.ece_tracker]

    def call(self, x, training=False):
        return self.predictor(x, training=training)

    def compile(
        self,
        d_optimizer=None,
        p_optimizer=None,
        loss="non_saturating",
        penalty=None,
        penalty_weight=10.0,
        d_steps=1,
        **kwargs,
    ):
        """Configure training; the arguments mirror `alllib.GAN.compile`.

        Args:
            d_optimizer, p_optimizer: one optimizer per player (instances or names).
            loss: a name in `alllib.losses.LOSSES`; the predictor plays the generator's side.
            penalty: None, `"r1"` or `"gradient_penalty"` on the discriminator's gradient with
                respect to the label vector, weight `penalty_weight`.
            d_steps: discriminator updates per predictor update (each on fresh real targets).
            **kwargs: passed to `keras.Model.compile`.
        """
        self._configure_duel(loss, penalty, penalty_weight, d_steps)
        self.p_optimizer, self.d_optimizer = self._compile_players(
            {
                "p_optimizer": (p_optimizer, self.predictor),
                "d_optimizer": (d_optimizer, self.discriminator),
            },
            **kwargs,
        )
        self._remember_compile(
            d_optimizer=self.d_optimizer,
            p_optimizer=self.p_optimizer,
            loss=self.loss_name,
            penalty=self.penalty,
            penalty_weight=self.penalty_weight,
            d_steps=self.d_steps,
            **kwargs,
        )

    # -- the duel -------------------------------------------------------------------------

    def _scores(self, x, label_vectors, training):
        inputs = [x, label_vectors] if self.conditional else label_vectors
        return self.discriminator(inputs, training=training)

    def _predictor_loss_terms(self, x, one_hot, probs, training):
        """The predictor's adversarial loss and its mean cross-entropy, given its outputs."""
        adversarial = losses.generator_loss(self.loss_name, self._scores(x, probs, training))
        return adversarial, ops.mean(cross_entropy(one_hot, probs))

    def duel_step(self, data):
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels = checks.label_batch(labels)
        one_hot = ops.one_hot(labels, self.num_classes, dtype="float32")

        # One forward pass of the predictor serves both players: the discriminator trains on its
        # outputs as constants, and the predictor's gradient is pulled back through it later.
        # (The predictor's weights do not change in between, so this is the same round as
        # running the predictor twice, at the cost of one pass.)
        probs, pullback = forward(
            lambda: ops.cast(self.predictor(x, training=True), "float32"),
            self.predictor.trainable_variables,
        )
        predictions = ops.stop_gradient(probs)

        # Round 1: the discriminator learns real targets from the predictor's outputs.
        for _ in range(self.d_steps):
            real = self.targets(one_hot, seed=self.seed_generator)
            d_loss, (real_scores, fake_scores), d_grads = minimize(
                lambda: self._discriminator_objective(
                    lambda v, training: self._scores(x, v, training), real, predictions
                ),
                self.discriminator.trainable_variables,
                self.d_optimizer,
            )

        # Round 2: the predictor learns to pass as real; the discriminator only lends gradients.
        def predictor_objective(outputs):
            adversarial, ce = self._predictor_loss_terms(x, one_hot, outputs, training=True)
            return (adversarial + self.ce_weight * ce if self.ce_weight else adversarial), ()

        _, (p_loss, _), output_grads = tensor_gradient(
            scaled(predictor_objective, self.p_optimizer), predictions
        )
        grads = apply(self.p_optimizer, pullback(output_grads), self.predictor.trainable_variables)
        return self._record(
            d_loss=d_loss,
            p_loss=p_loss,
            d_acc=losses.discriminator_accuracy(self.loss_name, real_scores, fake_scores),
            accuracy=_correct(predictions, labels),
            d_grad_norm=global_norm(d_grads),
            p_grad_norm=global_norm(grads),
        )

    # -- evaluation ---------------------------------------------------------------------------

    def test_step(self, *args):
        return run_test_step(self, self._evaluate_batch, args)

    def _evaluate_batch(self, data):
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels = checks.label_batch(labels)
        probs = ops.cast(self.predictor(x, training=False), "float32")
        one_hot = ops.one_hot(labels, self.num_classes, dtype="float32")
        accuracy = self._metric("accuracy")
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
                adversarial, ce = self._predictor_loss_terms(x, one_hot, probs, training=False)
                return (adversarial if term == "adversarial" else self.ce_weight * ce), ()

            _, _, grads = gradients(objective, self.predictor.trainable_variables)
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
        try:
            outputs = self.predictor(x, training=False)
        except Exception as error:
            raise ValueError(
                f"`predictor` could not be called on an input batch of shape {x.shape}: {error}"
            ) from error
        probs = ops.convert_to_numpy(ops.cast(outputs, "float32")).astype("float64")
        tolerance = _PROB_TOLERANCE_BY_DTYPE.get(
            keras.backend.standardize_dtype(outputs.dtype), _PROB_TOLERANCE
        )
        if probs.shape != (len(x), self.num_classes):
            raise ValueError(
                f"`predictor` must return probabilities of shape (batch, num_classes) = "
                f"({len(x)}, {self.num_classes}); it returned shape {probs.shape}."
            )
        if (
            probs.min() < -tolerance
            or np.abs(probs.sum(-1) - 1).max() > tolerance
        ):
            raise ValueError(
                "`predictor` must return probabilities (non-negative, each row summing to 1; "
                "end it with a softmax); its rows sum to "
                f"{np.round(probs.sum(-1), 4).tolist()}, minimum {probs.min():.4g}."
            )
        vectors = ops.convert_to_tensor(probs.astype("float32"))
        inputs = [ops.convert_to_tensor(x), vectors] if self.conditional else vectors
        called_on = (
            f"[x of shape {x.shape}, label vectors of shape {probs.shape}]"
            if self.conditional
            else f"label vectors of shape {probs.shape}"
        )
        try:
            scores = self.discriminator(inputs, training=False)
        except Exception as error:
            hint = (
                " A conditional discriminator takes two inputs, [x, label_vector]."
                if self.conditional
                else " With conditional=False it takes the label vector alone."
            )
            raise ValueError(
                f"`discriminator` could not be called on {called_on}: {error}.{hint}"
            ) from error
        if tuple(scores.shape) != (len(x), 1):
            raise ValueError(
                "`discriminator` must return one score per example, shape (batch, 1); on "
                f"{called_on} it returned shape {tuple(scores.shape)}."
            )
        self._probed.add(signature)

    # -- serialization ------------------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(
            predictor=keras.saving.serialize_keras_object(self.predictor),
            discriminator=keras.saving.serialize_keras_object(self.discriminator),
            num_classes=self.num_classes,
            conditional=self.conditional,
            targets=keras.saving.serialize_keras_object(self.targets),
            ce_weight=self.ce_weight,
            seed=self.seed,
        )
        return config

    @classmethod
    def from_config(cls, config):
        for key in ("predictor", "discriminator", "targets"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def _correct(probs, labels):
    return ops.cast(ops.argmax(probs, axis=-1) == labels, "float32")
