"""`LabelAuction`: the label-learning essay's "several predictors competing to fool one
discriminator, like bidders in an auction". K predictors share one discriminator, which learns to
tell real label vectors from all of their outputs. In a round the discriminator moves first; then
either every predictor moves against it, or (`bidding=True`) only the round's winning bidder: the
predictor whose outputs the discriminator just judged most real (lowest adversarial loss, ties to
the lowest index). A losing bidder's step is skipped inside the compiled round, so its weights
and its optimizer's state (moments, iterations) stay as they were; its `p{k}_loss` and
`p{k}_grad_norm` still log the step it would have taken. The model's prediction is the mean of
the K predictors' probabilities."""

import keras
from keras import ops

from alllib import backend, losses
from alllib.duel import Duel, Player
from alllib.label_learner import AdversarialLabelLearner, _correct, _tensors


@keras.saving.register_keras_serializable(package="alllib")
class LabelAuction(AdversarialLabelLearner):
    """K >= 2 predictors (players `predictor_0`... with prefixes `p0`...) and one discriminator.

    Args:
        predictors: a list of Keras models, each mapping inputs to probabilities.
        discriminator, num_classes, conditional, targets, ce_weight, seed: as in
            `AdversarialLabelLearner`; `ce_weight` adds cross-entropy to every predictor's loss.
        bidding: False (every predictor moves in every round) or True (only the winner moves).

    Logs `p{k}_wins`, the share of rounds predictor k won (with or without bidding), and
    `accuracy`, the ensemble's."""

    def __init__(self, predictors, discriminator, num_classes, conditional=False, targets=None,
                 ce_weight=0.0, bidding=False, seed=None, **kwargs):
        if not isinstance(predictors, (list, tuple)) or not predictors:
            raise ValueError("`predictors` must be a non-empty list of Keras models; received "
                             f"{predictors!r}.")
        if len(predictors) == 1:
            raise ValueError("An auction needs at least 2 predictors; for one predictor against "
                             "a discriminator use alllib.AdversarialLabelLearner.")
        for k, network in enumerate(predictors):
            if not isinstance(network, keras.Model):
                raise TypeError(f"`predictors[{k}]` must be a keras.Model; received "
                                f"{type(network).__name__}.")
        if len({id(p) for p in predictors}) != len(predictors):
            raise ValueError("`predictors` holds the same network more than once; each bidder "
                             "needs its own.")
        players = [Player("discriminator", discriminator, "d")] + [
            Player(f"predictor_{k}", p, f"p{k}") for k, p in enumerate(predictors)]
        wins = tuple(f"p{k}_wins" for k in range(len(predictors)))
        Duel.__init__(self, players, logs=("d_acc", "accuracy", *wins), seed=seed, **kwargs)
        self.num_predictors = len(predictors)
        self._set_up(num_classes, conditional, targets, ce_weight)
        if not isinstance(bidding, bool):
            raise TypeError(f"`bidding` must be True or False; received {bidding!r}.")
        self.bidding = bidding

    @property
    def predictors(self):
        return [getattr(self, f"predictor_{k}") for k in range(self.num_predictors)]

    def call(self, x, training=False):
        return ops.mean(ops.stack([p(x, training=training) for p in self.predictors]), axis=0)

    def compile(self, d_optimizer=None, p_optimizer=None, **kwargs):
        """`Duel.compile` with `d_optimizer` and one optimizer per predictor: `p0_optimizer`...,
        or `p_optimizer`, which every predictor gets a fresh copy of."""
        if self.bidding and backend.separate_replicas() > 1:
            raise ValueError(
                "bidding=True needs one winner per round, and each tf.distribute replica would "
                "pick its own from its slice of the batch; train it on one device, or on JAX.")
        if p_optimizer is None and any(kwargs.get(f"p{k}_optimizer") is None
                                       for k in range(self.num_predictors)):
            raise TypeError("compile() needs `p_optimizer` (each predictor gets a copy) or one "
                            f"of `p0_optimizer` ... `p{self.num_predictors - 1}_optimizer` each.")
        if p_optimizer is not None:
            template = keras.optimizers.get(p_optimizer)
            for k in range(self.num_predictors):
                if kwargs.get(f"p{k}_optimizer") is not None:
                    raise ValueError(f"Pass `p_optimizer` or `p{k}_optimizer`, not both.")
                kwargs[f"p{k}_optimizer"] = type(template).from_config(template.get_config())
        Duel.compile(self, d_optimizer=d_optimizer, **kwargs)

    def play_round(self, data):
        x, labels = _tensors(data)
        one_hot = ops.one_hot(labels, self.num_classes, dtype="float32")
        passes = [self.shared_pass(f"predictor_{k}", lambda p=p: ops.cast(
            p(x, training=True), "float32")) for k, p in enumerate(self.predictors)]
        fakes = [probs for probs, _ in passes]
        for _ in range(self.d_steps):
            real = self.targets(one_hot, seed=self.seed_generator)
            real_scores, fake_scores = self.move(
                "discriminator", lambda: self.discriminator_objective(x, real, fakes)
            )
        # The bids: each predictor's adversarial loss against the discriminator as it now is.
        bids = ops.stack([losses.generator_loss(self.loss_fn, self._scores(x, f, False))
                          for f in fakes])
        winner = ops.argmin(bids)
        for k, (_, pass_) in enumerate(passes):
            self.move(f"predictor_{k}", lambda p: self.predictor_objective(x, one_hot, p),
                      through=pass_, when=(winner == k) if self.bidding else None)
        ensemble = ops.mean(ops.stack(fakes), axis=0)
        return {
            "d_acc": losses.discriminator_accuracy(self.loss_fn, real_scores, fake_scores),
            "accuracy": _correct(ensemble, labels),
            **{f"p{k}_wins": ops.cast(winner == k, "float32")
               for k in range(self.num_predictors)},
        }

    def discriminator_objective(self, x, real, fakes):
        """Real vectors against every predictor's: the fake half is all K predictors' outputs.
        A penalty sees the real batch K times, beside each predictor's (its interpolations need
        pairs)."""
        k = len(fakes)
        real_scores = self._scores(x, real, True)
        fake_scores = ops.concatenate([self._scores(x, f, True) for f in fakes], axis=0)
        repeated = keras.tree.map_structure(lambda a: ops.concatenate([a] * k, axis=0), x)
        loss = self.discriminator_loss(real_scores, fake_scores) + self.penalty_term(
            lambda vectors, training: self._scores(repeated, vectors, training),
            ops.concatenate([real] * k, axis=0), ops.concatenate(fakes, axis=0),
        )
        return loss, (real_scores, fake_scores)

    def probed_predictors(self):
        return [(f"predictors[{k}]", p) for k, p in enumerate(self.predictors)]

    def get_config(self):
        config = super().get_config()
        config["predictors"] = [config.pop(f"predictor_{k}") for k in range(self.num_predictors)]
        return {**config, "bidding": self.bidding}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["predictors"] = [keras.saving.deserialize_keras_object(p)
                                for p in config["predictors"]]
        return super().from_config(config)
