"""The backend interface on JAX: pure functions of the variables' values.
Keras's JAX trainer passes the model's state into `train_step` and wants it back, and JAX
differentiates only pure functions: the round runs in a `keras.StatelessScope` holding every
variable's incoming value, and each differentiation in a scope nested in it (`_pure`)."""

import contextlib

import jax
import jax.extend.core
import keras
from keras.src.backend.common.stateless_scope import get_stateless_scope  # Keras's own stack

MAX_STEPS_PER_EXECUTION = None
SeedGenerator = keras.random.SeedGenerator  # JAX's data parallelism is one global program


@contextlib.contextmanager
def state_kept(model):
    """Keras's JAX `fit`, `evaluate` and `predict` empty the model's variables while they run (to
    save memory): they hand the values to the next step and fill the variables again from the
    state the last step returned. When a batch fails to read before a step has returned since
    the emptying (the first batch of an epoch, also after a validation pass), or at any batch of
    `evaluate` and `predict`, nothing fills them, and the trained weights were gone. Here the
    values handed out are held (references, not copies) and, on failure, each emptied variable
    gets the newer of those and the last step's state. With `steps_per_execution > 1` a batch
    can fail inside an execution whose input is already donated; the error then says what was
    lost."""
    if getattr(model, "_jax_state_synced", True):
        model._jax_state = None  # already in the variables: syncing it later could only be stale
    handed = {"values": [], "state": None}
    stacked = model.__dict__.get("_purge_model_variables")  # an outer call's (validation)
    purge = stacked or model._purge_model_variables

    def holding_purge(**groups):
        handed["values"] = [(v, v._value) for group in _stateful(model).values() for v in group
                            if v._value is not None]
        handed["state"] = model._jax_state
        purge(**groups)

    object.__setattr__(model, "_purge_model_variables", holding_purge)
    try:
        yield
    except BaseException as error:
        _refill(model, handed, error)
        raise
    finally:
        if stacked is None:
            object.__delattr__(model, "_purge_model_variables")
        else:
            object.__setattr__(model, "_purge_model_variables", stacked)


def _stateful(model):
    """Every variable Keras's JAX trainer passes through its steps, as it groups them."""
    optimizer = getattr(model, "optimizer", None)
    return {"trainable_variables": model.trainable_variables,
            "non_trainable_variables": model.non_trainable_variables,
            "optimizer_variables": optimizer.variables if optimizer else [],
            "metrics_variables": model.metrics_variables}


def _refill(model, handed, error):
    groups = _stateful(model)
    emptied = [v for group in groups.values() for v in group if v._value is None]
    if not emptied:
        return
    newest = {id(v): value for v, value in handed["values"]}
    stepped = model._jax_state is not None and model._jax_state is not handed["state"]
    if stepped:  # a step returned after the last emptying: its state is newer
        for key, group in groups.items():
            state = model._jax_state.get(key) or ()
            newest.update((id(v), value) for v, value in zip(group, state))
    lost = []
    for variable in emptied:
        value = newest.get(id(variable))
        if value is None or value.is_deleted():
            lost.append(variable.path)
        else:
            variable.assign(value)
    model._jax_state, model._jax_state_synced = None, True
    if lost:
        error.add_note(f"alllib: {len(lost)} of the model's variables could not be put back "
                       f"(their values went to a step that did not finish, as can happen with "
                       f"steps_per_execution > 1), among them {lost[:3]}; reload the last saved "
                       "model or checkpoint.")


def gradients(loss_fn, variables):
    variables = list(variables)
    pure, values, commit = _pure(loss_fn, variables)
    (loss, (aux, writes)), grads = jax.value_and_grad(pure, has_aux=True)(values)
    commit(writes)
    return loss, aux, _none_where_unreached(pure, values, grads)


def forward(fn, variables):
    pure, values, commit = _pure(lambda: (fn(), ()), list(variables))
    outputs, vjp, (_, writes) = jax.vjp(pure, values, has_aux=True)
    commit(writes)
    return outputs, lambda g: _none_where_unreached(pure, values, vjp(g)[0])


def _none_where_unreached(pure, values, grads):
    """JAX gives zeros where the other backends say None: the output of `pure(values)` does not
    depend on that value. Read the dependence off the traced program, walking back from the
    output (a nested call counts as using all its inputs, which can only keep a value)."""
    program, shapes = jax.make_jaxpr(pure, return_shape=True)(values)
    program, outputs = program.jaxpr, len(jax.tree.leaves(shapes[0]))
    live = {v for v in program.outvars[:outputs] if isinstance(v, jax.extend.core.Var)}
    for equation in reversed(program.eqns):
        if any(v in live for v in equation.outvars):
            live.update(v for v in equation.invars if isinstance(v, jax.extend.core.Var))
    return [g if v in live else None for g, v in zip(grads, program.invars)]


def tensor_gradient(loss_fn, tensor, differentiable=False):
    # JAX gradients are always differentiable.
    pure, _, commit = _pure(loss_fn, [])
    (loss, (aux, writes)), grad = jax.value_and_grad(lambda t: pure([], t), has_aux=True)(tensor)
    commit(writes)
    return loss, aux, _none_where_unreached(lambda ts: pure([], ts[0]), [tensor], [grad])[0]


def apply_gradients(optimizer, grads, variables):
    variables = list(variables)
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer.apply(grads, variables)
        return
    # Its `apply` assigns variables inside `ops.cond` branches, which JAX cannot trace in a
    # stateless scope; `stateless_apply` returns the new values instead.
    new_values, new_state = optimizer.stateless_apply(
        [v.value for v in optimizer.variables], grads, [v.value for v in variables]
    )
    for variable, value in zip(variables + optimizer.variables, new_values + new_state):
        variable.assign(value)


def train_step(model, round_fn, args):
    groups = (model.trainable_variables, model.non_trainable_variables,
              model.optimizer.variables, model.metrics_variables)
    return _stateless(round_fn, args, groups)


def test_step(model, batch_fn, args):
    groups = (model.trainable_variables, model.non_trainable_variables, model.metrics_variables)
    return _stateless(batch_fn, args, groups)


def _stateless(fn, args, groups):
    """Run `fn(data)`, `groups`' variables set to the incoming `state`; return logs, new state."""
    state, data = args
    mapping = [(v, value) for vs, values in zip(groups, state) for v, value in zip(vs, values)]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = fn(data)
    new_state = tuple(
        [_or(scope.get_current_value(v), value) for v, value in zip(vs, values)]
        for vs, values in zip(groups, state)
    )
    return logs, new_state


class _NestedScope(keras.StatelessScope):
    """Keras sees only the innermost scope, so reads fall through to the parent; writes are kept."""

    def __init__(self, parent, state_mapping):
        super().__init__(state_mapping=state_mapping)
        self.parent = parent
        self.writes = {}

    def add_update(self, update):
        self.writes[id(update[0])] = update
        super().add_update(update)

    def get_current_value(self, variable):
        value = super().get_current_value(variable)
        if value is None and self.parent is not None:
            value = self.parent.get_current_value(variable)
        return value


def _pure(fn, variables):
    """`fn` as a pure function of `variables`' values: `(pure, values, commit)`, where
    `pure(values, *args)` runs `fn(*args) -> (out, aux)` in a scope mapping `variables` to `values`
    and returns `(out, (aux, writes))`; `writes`, the new values of other variables `fn` assigned
    (BatchNorm statistics, the seed state), are what `commit(writes)` assigns in the enclosing
    scope. Outside any scope (an eager diagnostic) variables read their own values."""
    parent = get_stateless_scope()
    differentiated = {id(v) for v in variables}
    written = []

    def pure(values, *args):
        with _NestedScope(parent, zip(variables, values)) as scope:
            out, aux = fn(*args)
        writes = [u for k, u in scope.writes.items() if k not in differentiated]
        written[:] = [variable for variable, _ in writes]
        return out, (aux, [value for _, value in writes])

    def commit(writes):
        for variable, value in zip(written, writes):
            variable.assign(value)

    values = [_or(parent and parent.get_current_value(v), v.value) for v in variables]
    return pure, values, commit


def _or(value, default):
    return default if value is None else value


def separate_replicas():
    return 1  # a DataParallel round is one global program


def device_name():
    device = jax.devices()[0]
    return "CPU" if device.platform == "cpu" else f"{device.platform.upper()} ({device.device_kind})"
