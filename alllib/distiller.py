"""`Distiller`: a small student learns from a frozen teacher, the label-learning essay's "pit a
small student against a big teacher". Three signals, mixed by weights:
- `kd_weight`: Hinton et al. (2015): match the teacher's probabilities softened at `temperature`
  T (their KL divergence times T², so its gradient keeps its size as T changes);
- `adversarial_weight` (with a `discriminator`): the adversarial label game, where the "real"
  label vectors are the teacher's probabilities on the same inputs and the student's are fake;
- `ce_weight`: cross-entropy on whatever labels there are (a label of -1 marks an unlabeled
  example, which the teacher still teaches).
The networks end in a softmax, as everywhere in the course; `log p` stands for the logits (a
softmax cannot tell them apart)."""

import keras
from keras import ops

from alllib import checks, losses
from alllib.data import UNLABELED
from alllib.duel import Duel, Player
from alllib.label_learner import AdversarialLabelLearner, _correct, _tensors, cross_entropy
from alllib.metrics import NLL_FLOOR


@keras.saving.register_keras_serializable(package="alllib")
class Distiller(AdversarialLabelLearner):
    """A student (the player named `predictor`, so it compiles with `p_optimizer` and logs
    `p_loss`) against a teacher that never moves, optionally through a discriminator.

    Args:
        student: a Keras model mapping inputs to probabilities, `(batch, num_classes)`.
        teacher: a trained Keras model with the same output; frozen (it has no optimizer).
        discriminator: None (no adversarial term), or a model scoring `[x, probabilities]`
            (`conditional=True`) or the probability vector alone.
        num_classes: number of classes K.
        kd_weight, temperature: Hinton's softened-target term and its temperature T.
        adversarial_weight: weight of the adversarial term (only with a discriminator).
        ce_weight: weight of the cross-entropy on the labelled examples of a batch.
        conditional: whether the discriminator also sees the input (default True, unlike the
            learner's default: a teacher's probabilities mean little without their input).
        seed: as in `AdversarialLabelLearner`.

    The teacher's `trainable` is set to False: it is never trained, and so no optimizer keeps
    moments for its weights."""

    unlabeled = True

    def __init__(self, student, teacher, discriminator=None, num_classes=None, kd_weight=0.0,
                 temperature=1.0, adversarial_weight=None, ce_weight=0.0, conditional=True,
                 seed=None, **kwargs):
        for name, network in (("student", student), ("teacher", teacher)):
            if not isinstance(network, keras.Model):
                raise TypeError(f"`{name}` must be a keras.Model; received "
                                f"{type(network).__name__}.")
        teacher.trainable = False
        players = [Player("predictor", student, "p"), Player("teacher", teacher, "t", trains=False)]
        if discriminator is not None:
            players.insert(0, Player("discriminator", discriminator, "d"))
        logs = ("d_acc", "accuracy", "agreement") if discriminator is not None else (
            "accuracy", "agreement")
        Duel.__init__(self, players, logs=logs, seed=seed, **kwargs)  # not the learner's two
        if discriminator is None:
            self.discriminator = None
        if num_classes is None:
            raise TypeError("Distiller needs `num_classes`, the width of both networks' outputs.")
        self._set_up(num_classes, conditional, None, ce_weight)
        self.kd_weight = checks.number("kd_weight", kd_weight)
        self.temperature = checks.number("temperature", temperature)
        if self.temperature <= 0:
            raise ValueError(f"`temperature` must be positive; received {temperature!r}.")
        if discriminator is None and adversarial_weight:
            raise ValueError("`adversarial_weight` needs a `discriminator` to play against.")
        if discriminator is not None and adversarial_weight == 0:
            raise ValueError("A discriminator with adversarial_weight=0 would train but never "
                             "teach; pass discriminator=None instead.")
        self.adversarial_weight = 0.0 if discriminator is None else checks.number(
            "adversarial_weight", 1.0 if adversarial_weight is None else adversarial_weight)
        if not (self.kd_weight or self.adversarial_weight or self.ce_weight):
            raise ValueError("The student has nothing to learn from: give `kd_weight`, "
                             "`ce_weight` or a discriminator a positive weight.")
        widths = {name: getattr(net, "output_shape", (None,))[-1]
                  for name, net in (("student", student), ("teacher", teacher))}
        if None not in widths.values() and widths["student"] != widths["teacher"]:
            raise ValueError(f"The teacher's output has width {widths['teacher']} and the "
                             f"student's {widths['student']}; they must match (num_classes).")

    @property
    def student(self):
        return self.predictor

    def compile(self, d_optimizer=None, p_optimizer=None, **kwargs):
        """`Duel.compile` with the student's `p_optimizer`, and `d_optimizer` when there is a
        discriminator."""
        if self.discriminator is None:
            if d_optimizer is not None:
                raise ValueError("This Distiller has no discriminator, so it takes no "
                                 "`d_optimizer`.")
            Duel.compile(self, p_optimizer=p_optimizer, **kwargs)
        else:
            Duel.compile(self, p_optimizer=p_optimizer, d_optimizer=d_optimizer, **kwargs)

    def play_round(self, data):
        x, labels = _tensors(data)
        labelled = ops.cast(labels != UNLABELED, "float32")
        teacher = ops.stop_gradient(ops.cast(self.teacher(x, training=False), "float32"))
        probs, pass_ = self.shared_pass(
            "predictor", lambda: ops.cast(self.predictor(x, training=True), "float32")
        )
        logs = {}
        if self.discriminator is not None:
            for _ in range(self.d_steps):
                real_scores, fake_scores = self.move(
                    "discriminator", lambda: self.discriminator_objective(x, teacher, probs)
                )
            logs["d_acc"] = losses.discriminator_accuracy(self.loss_fn, real_scores, fake_scores)
        self.move("predictor", lambda p: self.student_objective(x, labels, labelled, teacher, p),
                  through=pass_)
        logs["accuracy"] = (_correct(probs, labels), labelled)
        logs["agreement"] = _correct(probs, ops.argmax(teacher, axis=-1))
        return logs

    def student_objective(self, x, labels, labelled, teacher, probs):
        """The weighted sum of the student's three terms (each a mean over its examples)."""
        loss = 0.0
        if self.kd_weight:
            loss += self.kd_weight * softened_kl(teacher, probs, self.temperature)
        if self.adversarial_weight:
            adversarial = losses.generator_loss(self.loss_fn, self._scores(x, probs, True))
            loss += self.adversarial_weight * adversarial
        if self.ce_weight:
            one_hot = ops.one_hot(ops.maximum(labels, 0), self.num_classes, dtype="float32")
            ce = ops.sum(labelled * cross_entropy(one_hot, probs)) / ops.maximum(
                ops.sum(labelled), 1.0)
            loss += self.ce_weight * ce
        return loss, ()

    def evaluate_batch(self, data):
        x, labels = _tensors(data)
        probs = ops.cast(self.predictor(x, training=False), "float32")
        teacher = ops.cast(self.teacher(x, training=False), "float32")
        logs = self.evaluation_logs(x, labels, probs, ops.cast(labels != UNLABELED, "float32"))
        agreement = self._trackers["agreement"]
        agreement.update_state(_correct(probs, ops.argmax(teacher, axis=-1)))
        return {**logs, "agreement": agreement.result()}

    def probed_predictors(self):
        return [("student", self.predictor), ("teacher", self.teacher)]

    def get_config(self):
        config = super().get_config()
        config["student"] = config.pop("predictor")
        config.pop("targets")  # the teacher's outputs are the targets
        return {**config, "kd_weight": self.kd_weight, "temperature": self.temperature,
                "adversarial_weight": self.adversarial_weight or None}


def softened_kl(teacher, student, temperature, floor=NLL_FLOOR):
    """Mean over the batch of T² KL(teacher_T || student_T), where p_T = softmax(log p / T).
    Probabilities are floored at the smallest normal float32 only: a confident teacher's tiny
    probabilities (1e-12, say) are the "dark knowledge" that a high T brings back."""
    t = ops.log_softmax(ops.log(ops.clip(teacher, floor, 1.0)) / temperature, axis=-1)
    s = ops.log_softmax(ops.log(ops.clip(student, floor, 1.0)) / temperature, axis=-1)
    return temperature ** 2 * ops.mean(ops.sum(ops.exp(t) * (t - s), axis=-1))
