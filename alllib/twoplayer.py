"""`TwoPlayerModel`: what every adversarial model in alllib shares.

Two networks, two optimizers, one `train_step` that is a round of a duel. Keras's `fit` threads
only `model.optimizer` through its training state (on JAX nothing else is carried from step to
step), so the two players' optimizers are wrapped in one `keras.optimizers.MultiOptimizer` that
becomes the compiled optimizer, while each player's update calls its own optimizer directly.

Under the `"mixed_float16"` dtype policy each player's optimizer is a
`keras.optimizers.LossScaleOptimizer` with its own dynamic loss scale, rather than one around the
compiled optimizer as `keras.Model.compile` would do: the players' losses and gradients differ.
"""

import math

import keras
from keras import ops

from alllib import backend, checks, losses

_SEED_STATE = "seed_generator_state"  # the key of the noise stream's state in saved files


class TwoPlayerModel(keras.Model):
    """Subclasses set `players` and `metric_names` and implement `duel_step(data) -> logs`.

    `players` maps each player's log prefix to its name, in the order the players move in a
    round; each player logs `{prefix}_loss` and `{prefix}_grad_norm`. The model also logs `loss`,
    the players' losses added up: no one minimises it, but it is finite exactly when both are,
    and Keras callbacks that read `loss` (`TerminateOnNaN`, any given `monitor="loss"`) need it.
    """

    players = {}
    metric_names = ()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._trackers = [keras.metrics.Mean(name=name) for name in ("loss", *self.metric_names)]

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

    def _compile_players(self, players, auto_scale_loss=True, **kwargs):
        """Compile with one optimizer per player.

        `players` maps an argument name (for error messages) to `(optimizer, network)`. With
        `auto_scale_loss` and a `"mixed_float16"` policy, each player's optimizer is wrapped in a
        `LossScaleOptimizer` (as Keras would wrap the single optimizer of an ordinary model).
        """
        scale_loss = auto_scale_loss and self.dtype_policy.name == "mixed_float16"
        optimizers = []
        for arg, (optimizer, _) in players.items():
            if optimizer is None:
                raise TypeError(f"compile() is missing the optimizer argument `{arg}`.")
            optimizer = keras.optimizers.get(optimizer)
            if any(_inner(optimizer) is _inner(o) for o in optimizers):
                raise ValueError(
                    f"`{arg}` is the same optimizer instance as another player's; each player "
                    "needs its own optimizer (its own moments and step count)."
                )
            if scale_loss and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
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
            v.path: _inner(optimizer)
            for optimizer, network in zip(optimizers[1:], networks[1:])
            for v in network.trainable_variables
        }
        compiled = PlayerOptimizers(
            keras.optimizers.OptimizerMap(_inner(optimizers[0]), mapping),
            loss_scale_optimizers=[
                o for o in optimizers if isinstance(o, keras.optimizers.LossScaleOptimizer)
            ],
        )
        for optimizer, network in zip(optimizers, networks):
            if optimizer is not _inner(optimizer) and not optimizer.built:
                optimizer.build(network.trainable_variables)  # its loss scale, and the inner one
        compiled.build(self.trainable_variables)  # builds each player's optimizer; TF needs it now
        # No second loss scale around the compiled optimizer: each player's update scales its own.
        super().compile(optimizer=compiled, auto_scale_loss=False, **kwargs)
        return optimizers

    def _remember_compile(self, **arguments):
        """Keep `compile`'s arguments (the players' optimizers as built) for `model.save`."""
        self._compile_arguments = arguments

    def get_compile_config(self):
        """`compile`'s arguments, serialized: `keras.saving.load_model` recompiles with them."""
        if not self.compiled:
            return {}
        return keras.saving.serialize_keras_object(self._compile_arguments)

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))

    def save_own_variables(self, store):
        # Keras saves a layer's variables but not its SeedGenerator's state; without it a
        # reloaded model would draw its noise from the start of the stream again.
        super().save_own_variables(store)
        store[_SEED_STATE] = self.seed_generator.state

    def load_own_variables(self, store):
        self.seed_generator.state.assign(store[_SEED_STATE])
        super().load_own_variables({k: store[k] for k in store.keys() if k != _SEED_STATE})

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, **kwargs):
        """`keras.Model.fit` after checking the data eagerly (`check_fit_data`), plus a
        `DivergenceGuard`, unless `callbacks` has one already or a
        `keras.callbacks.TerminateOnNaN` (which stops quietly instead)."""
        if not self.compiled:
            raise ValueError(
                f"{type(self).__name__}.fit() was called before compile(); call "
                f"compile({', '.join(f'{p}_optimizer=...' for p in self.players)}) first."
            )
        self.check_fit_data(x, y, validation_data, kwargs)
        callbacks = list(callbacks or [])
        watchers = (DivergenceGuard, keras.callbacks.TerminateOnNaN)
        if not any(isinstance(c, watchers) for c in callbacks):
            callbacks.append(DivergenceGuard())
        return super().fit(
            x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
            validation_split=validation_split, validation_data=validation_data, **kwargs,
        )

    def check_fit_data(self, x, y, validation_data, kwargs):
        """Raise a clear error for data `fit` cannot use, before any traced code runs; `kwargs`
        are `fit`'s other keyword arguments."""

    def train_step(self, *args):
        return backend.run_train_step(self, self._train_round, args)

    def _train_round(self, data):
        logs = self.duel_step(data)
        self.optimizer.iterations.assign_add(1)  # counts rounds, for callbacks
        return logs

    def _metric(self, name):
        return next(tracker for tracker in self._trackers if tracker.name == name)

    def _record(self, **values):
        """Update the running means named like the given logs (and `loss`, the players' losses
        added up) and return those logs."""
        values = {"loss": sum(values[f"{prefix}_loss"] for prefix in self.players), **values}
        for name, value in values.items():
            self._metric(name).update_state(value)
        return {name: self._metric(name).result() for name in values}


class PlayerOptimizers(keras.optimizers.MultiOptimizer):
    """The compiled optimizer: a `MultiOptimizer` over the players' optimizers.

    A `MultiOptimizer` refuses to hold a `LossScaleOptimizer`, so it holds their inner
    optimizers, and `variables` adds each loss scale's state: on JAX, `fit` carries from step to
    step only what `model.optimizer.variables` lists.
    """

    def __init__(self, optimizer_map, loss_scale_optimizers=(), **kwargs):
        super().__init__(optimizer_map, **kwargs)
        self.loss_scale_optimizers = list(loss_scale_optimizers)

    @property
    def variables(self):
        return super().variables + [
            v for o in self.loss_scale_optimizers for v in (o.step_counter, o.dynamic_scale)
        ]


def _inner(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)


def global_norm(grads):
    """The L2 norm of a list of gradient tensors taken together."""
    return ops.sqrt(sum(ops.sum(ops.square(ops.cast(g, "float32"))) for g in grads))


class DivergenceGuard(keras.callbacks.Callback):
    """Stop training at the first non-finite loss or gradient norm, naming the player and step.

    Keras logs running means over the epoch, and a mean stays non-finite once one value was, so
    checking after every call into the backend finds the first bad step (with
    `steps_per_execution=k`, its chunk of k steps). A NaN reaches the opponent within a round:
    the discriminator reads the generator's samples (the predictor's outputs), the generator the
    discriminator it has just updated. So when both players went non-finite in the same round
    the message names both, the first to move (the likely origin) first.
    `TwoPlayerModel.fit` adds one unless given its own. Raises `FloatingPointError`.

    Reading the logs waits for the device at every check, which costs JAX its asynchronous
    dispatch (`benchmarks/divergence_guard.py`); `every=n` checks every n-th call into the
    backend and at the end of each epoch, and then names the steps since the last check.
    """

    def __init__(self, every=1):
        super().__init__()
        self.every = checks.integer("every", every, 1)

    def on_epoch_begin(self, epoch, logs=None):
        # Read here rather than at the start of fit: BackupAndRestore may restore it in between.
        self._start = int(ops.convert_to_numpy(self.model.optimizer.iterations))
        self._epoch, self._checked, self._calls = epoch, 0, 0

    def on_train_batch_end(self, batch, logs=None):
        # Keras reports a chunk by its nominal last step, past the epoch's end for a short one.
        steps = (self.params or {}).get("steps")
        done = min(batch + 1, steps or batch + 1)
        self._calls += 1
        if self._calls % self.every and done != steps:
            return
        first, self._checked = self._checked, done
        found = {}
        for prefix, player in self.model.players.items():
            for suffix, quantity in (("loss", "loss"), ("grad_norm", "gradient norm")):
                value = float(logs[f"{prefix}_{suffix}"])
                if not math.isfinite(value):
                    found.setdefault(player, []).append(f"{quantity} is {value}")
        if not found:
            return
        if done - first == 1:
            where = f"step {done} (round {self._start + done}"
        else:
            where = (f"steps {first + 1}-{done} (rounds {self._start + first + 1}-"
                     f"{self._start + done}")
        what = "; ".join(f"the {player}'s {' and '.join(q)}" for player, q in found.items())
        both = ""
        if len(found) > 1 and done - first > 1:
            both = (" Both players went non-finite in these steps; checking every step "
                    "(steps_per_execution=1, every=1) would narrow it to one round.")
        elif len(found) > 1:
            mover, other = found
            both = (f" Both players went non-finite in the same round: the {mover} moved first, "
                    f"so it is the likely origin, but it reads the {other}'s outputs, so the "
                    f"{other} may have started it.")
        raise FloatingPointError(
            f"Training diverged at epoch {self._epoch + 1}, {where} of its training): {what}."
            f"{both} Lower the learning rates, add a gradient penalty, or check the data."
        )
