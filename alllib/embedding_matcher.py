"""`EmbeddingMatcher`: the label-learning essay's pivot. An encoder emits an embedding, and a
discriminator decides whether an (embedding, label) pair matches. A round:
1. the discriminator learns to score each example's embedding with its true label as a match
   and with a wrong label (drawn uniformly from the others) as not (logistic loss);
2. the encoder moves on the same loss through the discriminator.

Both players want the true label recognisable, so the game is cooperative, not adversarial: the
matcher is a classifier, trained by negative sampling. At the loss's optimum a pair's score is
the log-odds that it is the true pair, `s_y = log((K - 1) p_y / (1 - p_y))` for a class of
probability `p_y`, so `call` reads the class probabilities back as `sigmoid(s_y - log(K - 1))`,
normalised. With `nets.label_matcher`'s scores `b(e) + <w_y, e>` the classifier is linear in the
embedding. Unlabeled examples teach it nothing, so it takes none.
"""

import math

import keras
import numpy as np
from keras import ops

from alllib import checks
from alllib.duel import Duel, Player
from alllib.label_learner import _correct


@keras.saving.register_keras_serializable(package="alllib")
class EmbeddingMatcher(Duel):
    """An encoder and a discriminator of (embedding, label) pairs, trained by `fit(x, y)`.

    Args:
        encoder: a Keras model mapping inputs to embeddings, `(batch, embedding_dim)`.
        discriminator: a Keras model called on `[embeddings, integer labels (batch,)]`,
            returning one logit per pair (`nets.label_matcher`).
        num_classes: K; labels are integers in [0, K).
        seed: as in `Duel` (its stream draws the wrong labels)."""

    def __init__(self, encoder, discriminator, num_classes, seed=None, **kwargs):
        super().__init__(
            [Player("discriminator", discriminator, "d"), Player("encoder", encoder, "e")],
            logs=("d_acc", "accuracy"), seed=seed, **kwargs)
        self.num_classes = checks.integer("num_classes", num_classes, 2)
        self._probed = set()

    def matching_objective(self, embeddings, labels, wrong):
        """Both players' loss: true pairs scored as matches, wrong pairs as not."""
        true_scores = self._pair_scores(embeddings, labels)
        wrong_scores = self._pair_scores(embeddings, wrong)
        loss = 0.5 * (ops.mean(ops.softplus(-true_scores)) + ops.mean(ops.softplus(wrong_scores)))
        return loss, (true_scores, wrong_scores)

    def play_round(self, data):
        x, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        checks.no_batch_weights(type(self).__name__, sample_weight)
        x = keras.tree.map_structure(ops.convert_to_tensor, x)
        labels = checks.label_batch(labels)
        shift = keras.random.randint(ops.shape(labels), 1, self.num_classes,
                                     seed=self.seed_generator, dtype="int32")
        wrong = (labels + shift) % self.num_classes  # never the true label
        # One encoder pass serves both moves: constants for the discriminator, then pulled back.
        embeddings, pass_ = self.shared_pass(
            "encoder", lambda: ops.cast(self.encoder(x, training=True), "float32"))
        true_scores, wrong_scores = self.move(
            "discriminator", lambda: self.matching_objective(embeddings, labels, wrong))
        self.move("encoder", lambda e: self.matching_objective(e, labels, wrong), through=pass_)
        judged = ops.concatenate([ops.cast(true_scores > 0, "float32"),
                                  ops.cast(wrong_scores <= 0, "float32")])
        return {"d_acc": ops.mean(judged), "accuracy": _correct(self.class_scores(embeddings), labels)}

    def _pair_scores(self, embeddings, labels, training=True):
        scores = self.discriminator([embeddings, labels], training=training)
        return ops.reshape(ops.cast(scores, "float32"), (-1,))

    def class_scores(self, embeddings, training=False):
        """Every label's score for each embedding, `(batch, K)`: the classifier's logits."""
        n = ops.shape(embeddings)[0]
        repeated = ops.repeat(embeddings, self.num_classes, axis=0)
        labels = ops.tile(ops.arange(self.num_classes, dtype="int32"), [n])
        scores = self._pair_scores(repeated, labels, training)
        return ops.reshape(scores, (n, self.num_classes))

    def call(self, x, training=False):
        """Class probabilities read from every label's score (the module docstring says how)."""
        embeddings = ops.cast(self.encoder(x, training=training), "float32")
        probs = ops.sigmoid(self.class_scores(embeddings, training) - math.log(self.num_classes - 1))
        return probs / ops.sum(probs, axis=-1, keepdims=True)

    def compile(self, d_optimizer=None, e_optimizer=None, **kwargs):
        """`Duel.compile` with each player's optimizer; the loss is the matching loss above."""
        kwargs = checks.fixed_game("EmbeddingMatcher's loss is fixed (true pairs against wrong "
                                   "ones)", kwargs)
        super().compile(d_optimizer=d_optimizer, e_optimizer=e_optimizer, **kwargs)

    def evaluate_batch(self, data):
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        x = keras.tree.map_structure(ops.convert_to_tensor, x)
        embeddings = ops.cast(self.encoder(x, training=False), "float32")
        accuracy = self._trackers["accuracy"]
        accuracy.update_state(_correct(self.class_scores(embeddings), checks.label_batch(labels)))
        return {"accuracy": accuracy.result()}

    def check_data(self, x, y, x_name, y_name):
        """One integer label in [0, K) per finite input; then the networks are run on two."""
        y = checks.labels(y_name, y, self.num_classes, explain_unlabeled=True)
        checks.inputs_with_labels(x_name, x, y_name, y)
        self._probe(keras.tree.map_structure(lambda a: a[:2], x))

    def check_stream(self, data, name):
        return checks.streamed_labels(data, name, self.num_classes)

    def _probe(self, x):
        signature = str(keras.tree.map_structure(lambda a: (a.shape[1:], str(a.dtype)), x))
        if signature in self._probed:
            return
        shapes = keras.tree.map_structure(lambda a: tuple(a.shape), x)
        embeddings = checks.called("encoder", lambda: self.encoder(x, training=False),
                                   f"an input batch of shape {shapes}")
        if len(embeddings.shape) != 2:
            raise ValueError(f"`encoder` must return embeddings of shape (batch, embedding_dim); "
                             f"it returned shape {tuple(embeddings.shape)}.")
        labels = ops.convert_to_tensor(np.array([0, self.num_classes - 1], "int32"))
        what = (f"[embeddings of shape {tuple(embeddings.shape)}, labels of shape (2,)] (the "
                "discriminator judges (embedding, label) pairs)")
        scores = checks.called("discriminator",
                               lambda: self.discriminator([embeddings, labels], training=False),
                               what)
        checks.ends_in_logits(self.discriminator)
        checks.one_score_each(scores, 2, what)
        self._probed.add(signature)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
