"""`Duel`: what every adversarial model in alllib shares. The players are data; a round is a method.

A duel is an ordered list of `Player`s and one method, `play_round(data)`, that makes their
moves: each `self.move(name, objective)` steps that player's optimizer on its objective and
touches no other player's weights. Everything else is here: one optimizer per player (compiled
and saved), the logs, the noise stream, saving, and the check of `fit`'s data. A new model
writes its constructor and its round; `GAN`, `AdversarialLabelLearner` and the README's
three-player example are built this way.

Keras's `fit` threads only `model.optimizer` through its training state (on JAX nothing else is
carried from step to step), so the players' optimizers are wrapped in one
`keras.optimizers.MultiOptimizer` that becomes the compiled optimizer, while each move calls
its player's own optimizer. Under the `"mixed_float16"` policy each player's optimizer is a
`keras.optimizers.LossScaleOptimizer` with its own dynamic loss scale: the players' losses and
gradients differ in size.
"""

import threading

import keras
from keras import ops

from alllib import backend, checks, losses
from alllib.callbacks import DivergenceGuard

_SEED_STATE = "seed_generator_state"  # the key of the noise stream's state in saved files


class Player:
    """One network in a duel.

    Args:
        name: the player's name; the model keeps its network as the attribute of that name.
        network: a `keras.Model`.
        prefix: names its logs (`{prefix}_loss`, `{prefix}_grad_norm`), its compile argument
            (`{prefix}_optimizer`) and the model's attribute holding that optimizer.
        trains: False for a frozen player (a teacher): it never moves and needs no optimizer.
    """

    def __init__(self, name, network, prefix, trains=True):
        if not isinstance(network, keras.Model):
            raise TypeError(f"`{name}` must be a keras.Model; received {type(network).__name__}.")
        self.name, self.network, self.prefix, self.trains = name, network, prefix, trains
        self.optimizer = None  # set by `Duel.compile`

    def __repr__(self):
        return f"Player({self.name!r}, prefix={self.prefix!r}, trains={self.trains})"


class Duel(keras.Model):
    """The base class: players in the order they move, and a round that moves them.

    A subclass passes its players (and any logs of its own besides each moving player's loss and
    gradient norm) to `__init__`, and implements `play_round(data) -> {name: value}` with
    `self.move`. Its `compile` takes one `{prefix}_optimizer` per moving player and the game's
    settings. The model also logs `loss`, the players' losses added up: no one minimises it, but
    it is finite exactly when all are, and Keras callbacks that read `loss` need it.

    Args:
        players: the `Player`s, in the order they move in a round.
        logs: names of the round's other logs, in the order they are shown.
        seed: seed of `self.seed_generator`, the model's noise stream (saved with the model).
    """

    def __init__(self, players, logs=(), seed=None, **kwargs):
        super().__init__(**kwargs)
        labels = [p.name for p in players] + [p.prefix for p in players]
        if len(set(labels)) != len(labels):
            raise ValueError(f"Players need distinct names and prefixes; received {players}.")
        self.players = tuple(players)
        for player in self.players:
            setattr(self, player.name, player.network)
        self.seed = seed
        self.seed_generator = backend.SeedGenerator(seed)
        moving = [p.prefix for p in self.players if p.trains]
        names = ["loss", *(f"{p}_loss" for p in moving), *logs, *(f"{p}_grad_norm" for p in moving)]
        self._trackers = {name: keras.metrics.Mean(name=name) for name in names}
        # Each round's moves, per thread: a tf.distribute strategy runs each replica's round in
        # a thread of its own.
        self._this_round = threading.local()
        self.built = True

    @property
    def metrics(self):
        return list(self._trackers.values())

    @property
    def moving_players(self):
        return [p for p in self.players if p.trains]

    def player(self, name):
        for player in self.players:
            if player.name == name:
                return player
        raise ValueError(f"No player is named {name!r}; the players are "
                         f"{[p.name for p in self.players]}.")

    # -- compile --------------------------------------------------------------------------------

    def compile(self, loss="non_saturating", penalty=None, penalty_weight=10.0, d_steps=1,
                label_smoothing=0.0, auto_scale_loss=True, **kwargs):
        """Configure training: one optimizer per moving player, and the game.

        Args:
            {prefix}_optimizer: each moving player's optimizer (an instance or a name); each
                player needs its own.
            loss: the adversarial loss, a name in `alllib.losses.LOSSES` or an
                `alllib.losses.AdversarialLoss` of your own.
            penalty: None, `"r1"`, `"gradient_penalty"`, or a callable
                `penalty(score_fn, real, fake, seed) -> scalar`, added to the discriminator's
                loss with weight `penalty_weight`.
            d_steps: discriminator updates per round.
            label_smoothing: one-sided smoothing of the real targets (logistic losses only).
            auto_scale_loss: under `"mixed_float16"`, give each player a `LossScaleOptimizer`.
            **kwargs: passed to `keras.Model.compile` (`steps_per_execution`, `jit_compile`...).
        """
        optimizers = {p.prefix: kwargs.pop(f"{p.prefix}_optimizer", None)
                      for p in self.moving_players}
        self.loss_name, self.loss_fn = loss, losses.get(loss)  # as given, and resolved
        self.penalty, self.penalty_fn = penalty, losses.get_penalty(penalty)
        self.penalty_weight = checks.number("penalty_weight", penalty_weight)
        self.d_steps = checks.integer("d_steps", d_steps, 1)
        self.label_smoothing = checks.number("label_smoothing", label_smoothing, 0.0, 1.0)
        if self.label_smoothing and not self.loss_fn.logistic:
            raise ValueError(
                f"`label_smoothing` needs a logistic loss ('non_saturating' or 'minimax'); "
                f"loss={loss!r} has no probability targets to smooth."
            )
        self._compile_optimizers(optimizers, auto_scale_loss and
                                 self.dtype_policy.name == "mixed_float16")
        super().compile(optimizer=self._joint_optimizer(), auto_scale_loss=False, **kwargs)
        # What `get_compile_config` saves; subclasses add their own settings to it.
        self.compile_arguments = {
            **{f"{p.prefix}_optimizer": p.optimizer for p in self.moving_players},
            "loss": loss, "penalty": penalty, "penalty_weight": self.penalty_weight,
            "d_steps": self.d_steps, "label_smoothing": self.label_smoothing, **kwargs,
        }

    def _compile_optimizers(self, optimizers, scale_loss):
        seen = {}
        for player in self.moving_players:
            optimizer = optimizers[player.prefix]
            if optimizer is None:
                raise TypeError(
                    f"compile() is missing the optimizer argument `{player.prefix}_optimizer` "
                    f"(the {player.name}'s)."
                )
            optimizer = keras.optimizers.get(optimizer)
            for prefix, other in seen.items():
                if _inner(optimizer) is _inner(other):
                    raise ValueError(
                        f"`{player.prefix}_optimizer` is the same optimizer instance as "
                        f"`{prefix}_optimizer`; each player needs its own optimizer (its own "
                        "moments and step count)."
                    )
            if scale_loss and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            if optimizer is not _inner(optimizer) and not optimizer.built:
                optimizer.build(player.network.trainable_variables)  # its scale, and the inner
            seen[player.prefix] = optimizer
            player.optimizer = optimizer
            setattr(self, f"{player.prefix}_optimizer", optimizer)

    def _joint_optimizer(self):
        """The compiled optimizer: one `MultiOptimizer` mapping every variable to its player's."""
        moving = self.moving_players
        paths = [v.path for p in moving for v in p.network.trainable_variables]
        if len(set(paths)) != len(paths):
            raise ValueError(
                f"The players share variable paths ({[p.network.name for p in moving]}); give "
                "the networks distinct names."
            )
        # The first player's optimizer is the default and every other variable is mapped
        # explicitly by path: no lambda, so the result serializes.
        mapping = {v.path: _inner(p.optimizer)
                   for p in moving[1:] for v in p.network.trainable_variables}
        joint = PlayerOptimizers(
            keras.optimizers.OptimizerMap(_inner(moving[0].optimizer), mapping),
            loss_scale_optimizers=[p.optimizer for p in moving if p.optimizer is not
                                   _inner(p.optimizer)],
        )
        # Builds each player's optimizer (TensorFlow needs it now). Keras's trainers expect every
        # trainable variable to be mapped, so a frozen player's fall to the first optimizer,
        # which holds state for them but never steps them.
        joint.build(self.trainable_variables)
        return joint

    def get_compile_config(self):
        """`compile`'s arguments, serialized: `keras.saving.load_model` recompiles with them."""
        if not self.compiled:
            return {}
        return keras.saving.serialize_keras_object(self.compile_arguments)

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))

    # -- one round ------------------------------------------------------------------------------

    def play_round(self, data):
        """Make every moving player's moves for one batch; return the round's other logs."""
        raise NotImplementedError(f"{type(self).__name__} must implement play_round(data).")

    def move(self, name, objective, through=None):
        """One optimizer step of player `name` on `objective`; returns the objective's `aux`.

        `objective()` returns `(loss, aux)` and may call any network: only this player's
        weights move. With `through=self.shared_pass(name, fn)`, `objective(outputs)` is a function
        of that shared forward pass's outputs instead, and the gradient is pulled back through
        the pass. The player's loss and gradient norm are logged (a player moving several times
        in a round logs its last move).
        """
        player = self.player(name)
        optimizer, variables = player.optimizer, player.network.trainable_variables

        def scaled(*args):  # a LossScaleOptimizer's scale keeps small float16 gradients alive
            loss, aux = objective(*args)
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                return optimizer.scale_loss(loss), (loss, aux)
            return loss, (loss, aux)

        if through is None:
            _, (loss, aux), grads = backend.gradients(scaled, variables)
        else:
            outputs, pullback = through
            _, (loss, aux), output_grads = backend.tensor_gradient(scaled, outputs)
            grads = pullback(output_grads)
        logged = _unscaled(optimizer, grads)  # read before the step changes the scale
        backend.apply_gradients(optimizer, grads, variables)
        self._this_round.moves[player.prefix] = (loss, global_norm(logged))
        return aux

    def shared_pass(self, name, fn):
        """Run `fn()` (a pass of player `name`'s network) once, for two players: returns
        `(outputs, pass_)`; others use `outputs` as constants, and `move(name, ...,
        through=pass_)` later differentiates through the same pass."""
        outputs, pullback = backend.forward(fn, self.player(name).network.trainable_variables)
        outputs = ops.stop_gradient(outputs)
        return outputs, (outputs, pullback)

    def train_step(self, *args):
        return backend.train_step(self, self._train_round, args)

    def _train_round(self, data):
        self._this_round.moves = moves = {}
        logs = self.play_round(data) or {}
        missing = [p.name for p in self.moving_players if p.prefix not in moves]
        if missing:
            raise RuntimeError(f"play_round never moved {missing}; every moving player must.")
        self.optimizer.iterations.assign_add(1)  # counts rounds, for callbacks
        for prefix, (loss, norm) in moves.items():
            logs.update({f"{prefix}_loss": loss, f"{prefix}_grad_norm": norm})
        logs["loss"] = sum(loss for loss, _ in moves.values())
        return self.record(logs)

    def record(self, logs):
        """Update the running means named like `logs`; return the means, in the order shown."""
        for name, value in logs.items():
            self._trackers[name].update_state(value)
        return {name: t.result() for name, t in self._trackers.items() if name in logs}

    # -- shared parts of a discriminator's objective ------------------------------------------

    def discriminator_loss(self, real_scores, fake_scores):
        """The compiled loss of a discriminator's scores on real and on fake examples."""
        return losses.discriminator_loss(
            self.loss_fn, real_scores, fake_scores, self.label_smoothing
        )

    def penalty_term(self, score_fn, real, fake):
        """`penalty_weight` times the compiled penalty on `score_fn`'s input gradient (0 when
        there is none); its forward passes run in inference mode, so layer state never moves."""
        if self.penalty_fn is None or not self.penalty_weight:
            return 0.0
        return self.penalty_weight * self.penalty_fn(
            lambda points: score_fn(points, training=False), real, fake, seed=self.seed_generator
        )

    # -- fit, and saving ------------------------------------------------------------------------

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, **kwargs):
        """`keras.Model.fit` after checking the data eagerly (`check_fit_data`), plus a
        `callbacks.DivergenceGuard`, unless `callbacks` has one already or a
        `keras.callbacks.TerminateOnNaN` (which stops quietly instead)."""
        if not self.compiled:
            arguments = ", ".join(f"{p.prefix}_optimizer=..." for p in self.moving_players)
            raise ValueError(
                f"{type(self).__name__}.fit() was called before compile(); call "
                f"compile({arguments}) first."
            )
        self.check_fit_data(x, y, validation_data, kwargs)
        callbacks = list(callbacks or [])
        if not any(isinstance(c, (DivergenceGuard, keras.callbacks.TerminateOnNaN))
                   for c in callbacks):
            callbacks.append(DivergenceGuard())
        return super().fit(
            x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
            validation_split=validation_split, validation_data=validation_data, **kwargs,
        )

    def check_fit_data(self, x, y, validation_data, kwargs):
        """Raise a clear error for data `fit` cannot use, before any traced code runs; `kwargs`
        are `fit`'s other keyword arguments. Nothing by default."""

    def get_config(self):
        """The base config, the seed, and each player's network under the player's name (the
        constructor's argument of that name, unless a subclass says otherwise)."""
        return {**super().get_config(), "seed": self.seed, **{
            p.name: keras.saving.serialize_keras_object(p.network) for p in self.players}}

    @classmethod
    def from_config(cls, config):
        return cls(**{key: _deserialized(value) for key, value in config.items()})

    def save_own_variables(self, store):
        # Keras saves a layer's variables but not its SeedGenerator's state; without it a
        # reloaded model would draw its noise from the start of the stream again.
        super().save_own_variables(store)
        store[_SEED_STATE] = self.seed_generator.state

    def load_own_variables(self, store):
        self.seed_generator.state.assign(store[_SEED_STATE])
        super().load_own_variables({k: store[k] for k in store.keys() if k != _SEED_STATE})


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


def global_norm(grads):
    """The L2 norm of a list of gradient tensors taken together."""
    return ops.sqrt(sum(ops.sum(ops.square(ops.cast(g, "float32"))) for g in grads))


def _inner(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)


def _unscaled(optimizer, grads):
    """The gradients as a step applies them: a `LossScaleOptimizer`'s divided by its scale, all
    zeros for a step it skips because they are not finite (an infinite norm would spoil the
    epoch's mean of a step that moved nothing)."""
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return grads
    finite = optimizer.check_finite(grads)
    scale = optimizer.dynamic_scale
    return [g if g is None else ops.where(finite, g / ops.cast(scale, g.dtype), 0.0)
            for g in grads]


def _deserialized(value):
    """A serialized Keras object (a network, `SoftTargets`) as the object, else unchanged."""
    if isinstance(value, dict) and {"class_name", "config"} <= set(value):
        return keras.saving.deserialize_keras_object(value)
    return value
