"""The only backend-specific code in alllib.

Two-player models need two things Keras does not give a custom `train_step` for free on every
backend: "differentiate this loss with respect to these variables and step this optimizer", and
a single `train_step` signature. Everything else in alllib is written once with `keras.ops`.

- `minimize(loss_fn, variables, optimizer)` runs `loss_fn()`, takes the gradient of its loss with
  respect to `variables` only, and applies it with `optimizer`.
- `run_train_step(model, step_fn, args)` adapts `step_fn(data) -> logs` to the backend's
  `train_step`: on TensorFlow and PyTorch it is called directly; on JAX, whose trainer passes the
  whole model state in and expects it back, the step runs inside a `keras.StatelessScope` that maps
  every variable to its incoming value, and the new state is read back from that scope.
"""

import keras

BACKEND = keras.backend.backend()
_train_scopes = []  # JAX: the StatelessScope of the train step being traced, innermost last


def minimize(loss_fn, variables, optimizer):
    """Apply one `optimizer` step to `variables` on the loss returned by `loss_fn`.

    `loss_fn()` takes no argument and returns `(loss, aux)`; it reads variables the ordinary
    Keras way. Returns `(loss, aux, grads)`. Variables other than `variables` (the opponent's
    weights) are never updated, whatever the loss depends on.
    """
    variables = list(variables)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss, aux = loss_fn()
        grads = tape.gradient(loss, variables)
    elif BACKEND == "torch":
        import torch

        loss, aux = loss_fn()
        grads = torch.autograd.grad(loss, [v.value for v in variables], allow_unused=True)
        grads = [keras.ops.zeros_like(v.value) if g is None else g for g, v in zip(grads, variables)]
        with torch.no_grad():
            optimizer.apply(grads, variables)
        return loss, aux, grads
    elif BACKEND == "jax":
        loss, aux, grads = _jax_value_and_grad(loss_fn, variables)
    else:
        raise NotImplementedError(f"alllib does not support the {BACKEND!r} backend.")
    optimizer.apply(grads, variables)
    return loss, aux, grads


class _GradScope(keras.StatelessScope):
    """A scope nested in the train step's scope: reads fall through, writes are recorded."""

    def __init__(self, parent, state_mapping):
        super().__init__(state_mapping=state_mapping)
        self.parent = parent
        self.writes = {}

    def add_update(self, update):
        self.writes[id(update[0])] = update
        super().add_update(update)

    def get_current_value(self, variable):
        value = super().get_current_value(variable)
        return self.parent.get_current_value(variable) if value is None else value


def _jax_value_and_grad(loss_fn, variables):
    import jax

    parent = _train_scopes[-1] if _train_scopes else None
    if parent is None:
        raise RuntimeError(
            "alllib.backend.minimize must run inside a train step on the JAX backend "
            "(use model.fit or model.train_on_batch)."
        )
    differentiated = {id(v) for v in variables}
    written = []  # the variables loss_fn assigned (BatchNorm statistics, seed state)

    def loss_of(values):
        with _GradScope(parent, zip(variables, values)) as scope:
            loss, aux = loss_fn()
        writes = [u for k, u in scope.writes.items() if k not in differentiated]
        written[:] = [variable for variable, _ in writes]
        return loss, (aux, [value for _, value in writes])

    values = [parent.get_current_value(v) for v in variables]
    (loss, (aux, new_values)), grads = jax.value_and_grad(loss_of, has_aux=True)(values)
    for variable, value in zip(written, new_values):
        variable.assign(value)  # recorded in the train step's scope
    return loss, aux, grads


def run_train_step(model, step_fn, args):
    """Call `step_fn(data)` as `model.train_step(*args)` would be called on this backend."""
    if BACKEND != "jax":
        (data,) = args
        return step_fn(data)

    state, data = args
    groups = (
        model.trainable_variables,
        model.non_trainable_variables,
        model.optimizer.variables,
        model.metrics_variables,
    )
    mapping = [(v, value) for vs, values in zip(groups, state) for v, value in zip(vs, values)]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        _train_scopes.append(scope)
        try:
            logs = step_fn(data)
        finally:
            _train_scopes.pop()
    new_state = tuple(
        [_or(scope.get_current_value(v), value) for v, value in zip(vs, values)]
        for vs, values in zip(groups, state)
    )
    return logs, new_state


def _or(value, default):
    return default if value is None else value
