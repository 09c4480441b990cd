"""`TwoPlayerModel`: what every adversarial model in alllib shares.

Two networks, two optimizers, one `train_step` that is a round of a duel. Keras's `fit` threads
only `model.optimizer` through its training state (on JAX nothing else is carried from step to
step), so the two players' optimizers are wrapped in one `keras.optimizers.MultiOptimizer` that
becomes the compiled optimizer, while each player's update calls its own optimizer directly.
"""

import keras

from alllib import backend


class TwoPlayerModel(keras.Model):
    """Subclasses set `metric_names` and implement `duel_step(data) -> logs`."""

    metric_names = ()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._trackers = [keras.metrics.Mean(name=name) for name in self.metric_names]

    @property
    def metrics(self):
        return self._trackers

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

    def _record(self, **values):
        """Update the running means named like the logs and return the logs."""
        for tracker in self._trackers:
            tracker.update_state(values[tracker.name])
        return {tracker.name: tracker.result() for tracker in self._trackers}
