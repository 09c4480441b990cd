"""`Duel`: what every adversarial model in alllib shares. The players are data; a round is a method.
A subclass (`GAN`, `AdversarialLabelLearner`, the README's three-player game) is a constructor and
a `play_round`. Keras's `fit` carries only `model.optimizer` between steps (on JAX, nothing else),
so the players' optimizers join in one compiled `MultiOptimizer`; each move steps its player's own.
Under `"mixed_float16"` each has its own dynamic loss scale: their gradients differ in size."""

import threading
import warnings

import keras
import numpy as np
from keras import ops

from alllib import backend, checks, losses
from alllib.callbacks import DivergenceGuard
from alllib.data import UNLABELED
from alllib.metrics import global_norm

_RANDOM_STATE = "random_state_"  # saved files: the random streams' states, in order
_OLD_SEED_STATE = "seed_generator_state"  # the model's own stream, in files from before


class Player:
    """One network in a duel.

    Args:
        name: the player's name, and the model's attribute holding `network` (a `keras.Model`).
        prefix: names its logs (`{prefix}_loss`, `{prefix}_grad_norm`) and its optimizer (the
            compile argument and model attribute `{prefix}_optimizer`).
        trains: False for a frozen player (a teacher): it never moves and needs no optimizer."""

    def __init__(self, name, network, prefix, trains=True):
        if not isinstance(network, keras.Model):
            raise TypeError(f"`{name}` must be a keras.Model; received {type(network).__name__}.")
        self.name, self.network, self.prefix, self.trains = name, network, prefix, trains
        self.optimizer = None  # set by `Duel.compile`

    def __repr__(self):
        return f"Player({self.name!r}, prefix={self.prefix!r}, trains={self.trains})"


class Duel(keras.Model):
    """Players, and a round that moves them: a subclass implements `play_round(data) -> logs`
    with `self.move`, and `evaluate_batch(data) -> logs` if it has a held-out measure. The model
    logs each moving player's loss and gradient norm, and `loss`, their sum: no one minimises it,
    but it is finite exactly when all are, and callbacks read it.

    Args:
        players: the `Player`s, in the order they move in a round.
        logs: names of the round's other logs, in the order they are shown.
        seed: seed of `self.seed_generator`, the model's noise stream (saved with the model)."""

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
        # Per thread: a tf.distribute strategy runs each replica's round in a thread of its own.
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

    def compile(self, loss="non_saturating", penalty=None, penalty_weight=None, d_steps=1,
                label_smoothing=0.0, auto_scale_loss=True, **kwargs):
        """Configure training: one optimizer per moving player, and the game.

        Args:
            {prefix}_optimizer: each moving player's own optimizer (an instance or a name).
            loss: a name in `alllib.losses.LOSSES`, or an `alllib.losses.AdversarialLoss`.
            penalty: None, `"r1"`, `"gradient_penalty"` or a callable `penalty(score_fn, real,
                fake, seed) -> scalar`, added to the discriminator's loss times `penalty_weight`
                (default 10; only with a penalty).
            d_steps: discriminator updates per round.
            label_smoothing: one-sided smoothing of the real targets (logistic losses only).
            auto_scale_loss: under `"mixed_float16"`, give each player a `LossScaleOptimizer`.
            **kwargs: passed to `keras.Model.compile` (`steps_per_execution`, `jit_compile`...)."""
        optimizers = {p.prefix: kwargs.pop(f"{p.prefix}_optimizer", None)
                      for p in self.moving_players}
        checks.duel_compile_arguments(type(self).__name__, kwargs, list(optimizers))
        self.loss_name, self.loss_fn = loss, losses.get(loss)  # as given, and resolved
        self.penalty, self.penalty_fn = penalty, losses.get_penalty(penalty)
        if penalty is None and penalty_weight is not None:
            raise ValueError("`penalty_weight` has no effect without a `penalty`; pass "
                             "penalty='r1' or 'gradient_penalty' too, or leave it out.")
        self.penalty_weight = 10.0 if penalty_weight is None else checks.number(
            "penalty_weight", penalty_weight)
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
            "loss": loss, "penalty": penalty, "penalty_weight": penalty_weight,
            "d_steps": self.d_steps, "label_smoothing": self.label_smoothing, **kwargs,
        }

    def _compile_optimizers(self, optimizers, scale_loss):
        seen = {}
        for player in self.moving_players:
            if not player.network.trainable_variables:
                frozen = "" if player.network.trainable else (
                    " because its `trainable` is False (older GAN recipes froze the "
                    "discriminator inside a combined model; each player here moves with its own "
                    "optimizer, so set it back to True)")
                raise ValueError(
                    f"The {player.name} has no trainable weights{frozen}; a player that moves "
                    "needs some (a player that never moves is `Player(..., trains=False)`).")
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
        moving = self.moving_players
        paths = [v.path for p in moving for v in p.network.trainable_variables]
        if len(set(paths)) != len(paths):
            raise ValueError(
                f"The players share variable paths ({[p.network.name for p in moving]}); give "
                "the networks distinct names."
            )
        # The first player's optimizer is the default; the rest map by path (no lambda: serializes).
        mapping = {v.path: _inner(p.optimizer)
                   for p in moving[1:] for v in p.network.trainable_variables}
        joint = PlayerOptimizers(
            keras.optimizers.OptimizerMap(_inner(moving[0].optimizer), mapping),
            loss_scale_optimizers=[p.optimizer for p in moving if p.optimizer is not
                                   _inner(p.optimizer)],
        )
        # Builds them now, as TensorFlow needs; Keras wants even a frozen player's variables mapped.
        joint.build(self.trainable_variables)
        return joint

    def get_compile_config(self):
        """`compile`'s arguments, serialized: `keras.saving.load_model` recompiles with them."""
        if not self.compiled:
            return {}
        return keras.saving.serialize_keras_object(self.compile_arguments)

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        if config.get("penalty") is None:  # saved before a weight needed a penalty
            config.pop("penalty_weight", None)
        self.compile(**config)

    def play_round(self, data):
        """Make every moving player's moves for one batch; return the round's other logs."""
        raise NotImplementedError(f"{type(self).__name__} must implement play_round(data).")

    def move(self, name, objective, through=None, when=None):
        """Step player `name` on `objective() -> (loss, aux)`, which may call any network; returns
        `aux`, logs the loss and gradient norm (a round logs a player's last move). With `through`
        (from `shared_pass`), `objective(outputs)` is pulled back through that shared pass. With
        `when`, a boolean scalar tensor, the step is kept only where it is true: otherwise the
        player's weights and its optimizer's state (moments, iterations) stay as they were."""
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
            grads = [None] * len(variables) if output_grads is None else pullback(output_grads)
        grads = _zeros_where_unreached(player, grads, variables)
        logged = _unscaled(optimizer, grads)  # read before the step changes the scale
        if when is None:
            backend.apply_gradients(optimizer, grads, variables)
        else:
            _apply_when(when, optimizer, grads, variables)
        self._this_round.moves[player.prefix] = (loss, global_norm(logged))
        return aux

    def shared_pass(self, name, fn):
        """Run `fn()`, a pass of `name`'s network, once for two: returns `(outputs, pass_)`;
        others use `outputs` as constants; `move(name, ..., through=pass_)` differentiates it."""
        outputs, pullback = backend.forward(fn, self.player(name).network.trainable_variables)
        outputs = ops.stop_gradient(outputs)
        return outputs, (outputs, pullback)

    def train_step(self, *args):
        return backend.train_step(self, self._train_round, args)

    def test_step(self, *args):
        return backend.test_step(self, self.evaluate_batch, args)

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
        """Update the running means named like `logs`; return the means, in the order shown.
        A value may be a pair `(values, weights)`: a weighted mean (weight 0 leaves one out)."""
        for name, value in logs.items():
            values, weights = value if isinstance(value, tuple) else (value, None)
            self._trackers[name].update_state(values, sample_weight=weights)
        return {name: t.result() for name, t in self._trackers.items() if name in logs}

    def discriminator_loss(self, real_scores, fake_scores):
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

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, **kwargs):
        """`keras.Model.fit` after checking the data eagerly (`check_data`), plus a
        `DivergenceGuard` unless `callbacks` has one or a `TerminateOnNaN` (which stops quietly)."""
        if not self.compiled:
            arguments = ", ".join(f"{p.prefix}_optimizer=..." for p in self.moving_players)
            raise ValueError(
                f"{type(self).__name__}.fit() was called before compile(); call "
                f"compile({arguments}) first."
            )
        checks.no_weights(type(self).__name__, kwargs, validation_data)
        if not self._evaluates and (validation_split or validation_data is not None):
            raise ValueError(self._no_evaluation(f"{type(self).__name__}.fit() takes no "
                                                 "`validation_data` or `validation_split`"))
        for arrays in checks.fit_arrays(x, y, validation_data, self.inputs_name):
            self.check_data(*arrays)
        x = self.check_stream(x, "`x`")
        if validation_data is not None and not isinstance(validation_data, (tuple, list)):
            validation_data = self.check_stream(validation_data, "`validation_data`")
        callbacks = list(callbacks or [])
        if not any(isinstance(c, (DivergenceGuard, keras.callbacks.TerminateOnNaN))
                   for c in callbacks):
            callbacks.append(DivergenceGuard())
        with backend.state_kept(self), checks.stream_errors():
            return super().fit(
                x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
                validation_split=validation_split, validation_data=validation_data, **kwargs,
            )

    inputs_name = "inputs"  # what the examples are called in `check_data`'s messages

    def evaluate_batch(self, data):
        """One batch of `evaluate` -> logs (update `self._trackers`, return their results): the
        held-out measure of a duel that has one. Without it, `evaluate` and validation in `fit`
        are refused with a message, before Keras traces anything."""
        raise NotImplementedError(self._no_evaluation(f"{type(self).__name__} has no `evaluate`"))

    @property
    def _evaluates(self):
        return type(self).evaluate_batch is not Duel.evaluate_batch

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.evaluate` after the checks `fit` makes (`check_data` for arrays, each
        batch of a stream); labels that are all -1 (unlabeled) are refused: nothing to score."""
        if not self._evaluates:
            raise TypeError(self._no_evaluation(f"{type(self).__name__} has no `evaluate`"))
        if not kwargs.get("_use_cached_eval_dataset"):  # else fit's, checked in `fit`
            checks.no_weights(type(self).__name__, kwargs)
            for arrays in checks.fit_arrays(x, y, inputs=self.inputs_name):
                self.check_data(*arrays)
            if isinstance(y, np.ndarray) and y.size and np.all(y == UNLABELED):
                raise ValueError("`y` marks every example unlabeled (-1); evaluate needs labels.")
            x = self.check_stream(x, "`x`")
        with backend.state_kept(self), checks.stream_errors():
            return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        """`keras.Model.predict`; on JAX the weights survive a batch that fails to read."""
        with backend.state_kept(self):
            return super().predict(x, *args, **kwargs)

    def _no_evaluation(self, refused):
        return (f"{refused}: it defines no held-out measure. Implement "
                "`evaluate_batch(data) -> logs` to give it one.")

    def check_data(self, x, y, x_name, y_name):
        """Raise a clear error for data `fit` cannot use, before anything is traced: NumPy `x`
        and `y` (or None), named `x_name` and `y_name` (`checks.fit_arrays`). Nothing here."""

    def check_stream(self, data, name):
        """Streamed data (a dataset or generator, named `name`) made to check each batch as it
        is read, for what `check_data` checks once for arrays. Nothing here: returns `data`."""
        return data

    def get_config(self):
        """The base config, the seed, and each network under its player's name (for `__init__`)."""
        return {**super().get_config(), "seed": self.seed, **{
            p.name: keras.saving.serialize_keras_object(p.network) for p in self.players}}

    @classmethod
    def from_config(cls, config):
        return cls(**{key: _deserialized(value) for key, value in config.items()})

    def random_states(self):
        """The state of every random stream in the model that Keras does not save with the
        weights: the model's own noise, and each layer's (a Dropout layer's masks)."""
        saved = {id(v) for v in self.weights}
        return [v for v in self.variables if id(v) not in saved]

    def save_own_variables(self, store):
        # Else a reloaded model would draw other noise and dropout masks than an uninterrupted run.
        super().save_own_variables(store)
        for i, state in enumerate(self.random_states()):
            store[f"{_RANDOM_STATE}{i}"] = state

    def load_own_variables(self, store):
        for i, state in enumerate(self.random_states()):
            if f"{_RANDOM_STATE}{i}" in store:
                state.assign(store[f"{_RANDOM_STATE}{i}"])
        if _OLD_SEED_STATE in store:  # saved before the layers' streams were saved too
            self.seed_generator.state.assign(store[_OLD_SEED_STATE])
        super().load_own_variables({k: store[k] for k in store.keys()
                                    if not k.startswith((_RANDOM_STATE, _OLD_SEED_STATE))})


class PlayerOptimizers(keras.optimizers.MultiOptimizer):
    """The compiled optimizer. A `MultiOptimizer` refuses a `LossScaleOptimizer`, so it holds the
    players' inner optimizers, and `variables` adds each loss scale's state: on JAX, `fit` carries
    from step to step only what `model.optimizer.variables` lists."""

    def __init__(self, optimizer_map, loss_scale_optimizers=(), **kwargs):
        super().__init__(optimizer_map, **kwargs)
        self.loss_scale_optimizers = list(loss_scale_optimizers)

    @property
    def variables(self):
        return super().variables + [
            v for o in self.loss_scale_optimizers for v in (o.step_counter, o.dynamic_scale)
        ]


def _zeros_where_unreached(player, grads, variables):
    """Refuse a move whose loss reaches none of the player's weights (a network downstream that
    ignores its input); warn about some (an unused layer), which then get zero gradients."""
    unreached = [v.path for g, v in zip(grads, variables) if g is None]
    if len(unreached) == len(variables):
        raise ValueError(
            f"The {player.name}'s loss does not depend on any of its weights, so it cannot learn. "
            "Check that every network between it and its loss uses its input (a discriminator "
            "that ignores its input cuts the path).")
    if unreached:
        warnings.warn(f"The {player.name}'s loss does not reach {len(unreached)} of its weights "
                      f"({', '.join(unreached)}); they get zero gradients (an unused layer?).",
                      stacklevel=2)
    return [ops.zeros_like(v.value) if g is None else g for g, v in zip(grads, variables)]


def _apply_when(when, optimizer, grads, variables):
    """One optimizer step kept only where `when` is true. The step is always computed (a traced
    program cannot branch on a tensor in every backend) and then undone by a select, so a
    skipped step leaves the weights and the optimizer's state exactly as they were."""
    state = [*variables, *optimizer.variables]
    before = [ops.copy(v.value) for v in state]
    backend.apply_gradients(optimizer, grads, variables)
    for variable, old in zip(state, before):
        variable.assign(ops.where(when, variable.value, old))


def _inner(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)


def _unscaled(optimizer, grads):
    """The gradients as a step applies them: a `LossScaleOptimizer`'s unscaled, or zeros for a
    step it skips as not finite (an infinite norm would spoil the epoch's mean)."""
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
