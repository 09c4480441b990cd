"""`TwoPlayerModel`: what every adversarial model in alllib shares.

Two networks, two optimizers, one `train_step` that is a round of a duel. Keras's `fit` threads
only `model.optimizer` through its training state (on JAX nothing else is carried from step to
step), so the two players' optimizers are wrapped in one `keras.optimizers.MultiOptimizer` that
becomes the compiled optimizer, while each player's update calls its own optimizer directly.
"""

import keras
from keras import ops

from alllib import backend, checks, losses


class TwoPlayerModel(keras.Model):
    """Subclasses set `metric_names` and implement `duel_step(data) -> logs`."""

    metric_names = ()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._trackers = [keras.metrics.Mean(name=name) for name in self.metric_names]

    @property
    def metrics(self):
        return self._trackers

    def _configure_duel(self, loss, penalty, penalty_weight, d_steps, label_smoothing=0.0):
        """Validate and store the game's settings shared by every two-player model."""
        self.loss_name = losses.check(loss)
        self.penalty, self.penalty_weight = losses.check_penalty(penalty, penalty_weight)
        self.d_steps = checks.integer("d_steps", d_steps, 1)
        self.label_smoothing = checks.number("label_smoothing", label_smoothing, 0.0, 1.0)
        if self.label_smoothing and not losses.LOSSES[self.loss_name].logistic:
            raise ValueError(
                f"`label_smoothing` needs a logistic loss ('non_saturating' or 'minimax'); "
                f"loss={self.loss_name!r} has no probability targets to smooth."
            )

    def _discriminator_objective(self, score_fn, real, fake):
        """The discriminator's loss (plus its penalty) on a real and a generated batch.

        `score_fn(inputs, training)` calls the discriminator. Returns `(loss, (real_scores,
        fake_scores))`, the form `backend.minimize` expects. The penalty's extra forward pass
        runs in inference mode, so it never updates layer state.
        """
        real_scores = score_fn(real, training=True)
        fake_scores = score_fn(fake, training=True)
        loss = losses.discriminator_loss(
            self.loss_name, real_scores, fake_scores, self.label_smoothing
        )
        if self.penalty is not None and self.penalty_weight > 0:
            loss = loss + self.penalty_weight * losses.penalty(
                self.penalty,
                lambda points: score_fn(points, training=False),
                real,
                fake,
                seed=self.seed_generator,
            )
        return loss, (real_scores, fake_scores)

    def _compile_players(self, players, **kwargs):
        """Compile with one optimizer per player.

        `players` maps an argument name (for error messages) to `(optimizer, network)`.
        """
        optimizers = []
        for arg, (optimizer, _) in players.items():
            if optimizer is None:
                raise TypeError(f"compile() is missing the optimizer argument `{arg}`.")
            optimizer = keras.optimizers.get(optimizer)
            if any(optimizer is o for o in optimizers):
                raise ValueError(
                    f"`{arg}` is the same optimizer instance as another player's; each player "
                    "needs its own optimizer (its own moments and step count)."
                )
            optimizers.append(optimizer)
        networks = [network for _, network in players.values()]
        paths = [v.path for network in networks for v in network.trainable_variables]
        if len(set(paths)) != len(paths):
            raise ValueError(
                "The two players share variable paths "
                f"({[n.name for n in networks]}); give the networks distinct names."
            )
        # The first player's optimizer is the default; every variable of the others is mapped
        # explicitly by path. No lambda, so the result serializes.
        mapping = {
            v.path: optimizer
            for optimizer, network in zip(optimizers[1:], networks[1:])
            for v in network.trainable_variables
        }
        compiled = keras.optimizers.MultiOptimizer(
            keras.optimizers.OptimizerMap(optimizers[0], mapping)
        )
        compiled.build(self.trainable_variables)  # builds each player's optimizer; TF needs it now
        super().compile(optimizer=compiled, **kwargs)
        return optimizers

    def train_step(self, *args):
        return backend.run_train_step(self, self._train_round, args)

    def _train_round(self, data):
        logs = self.duel_step(data)
        self.optimizer.iterations.assign_add(1)  # counts rounds, for callbacks
        return logs

    def _metric(self, name):
        return self._trackers[self.metric_names.index(name)]

    def _record(self, **values):
        """Update the running means named like the given logs and return those logs."""
        for name, value in values.items():
            self._metric(name).update_state(value)
        return {name: self._metric(name).result() for name in values}


def global_norm(grads):
    """The L2 norm of a list of gradient tensors taken together."""
    return ops.sqrt(sum(ops.sum(ops.square(ops.cast(g, "float32"))) for g in grads))
