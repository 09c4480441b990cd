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
    """Keras's JAX `fit` and `evaluate` empty the model's variables (to save memory) while they
    run and fill them again from the state the last step returned; `evaluate` does not when a
    batch fails to read, and neither does `fit` when it is the first (a PyDataset's or
    DataLoader's, which Keras does not peek at). The trained weights were gone. On failure, put
    back the last step's state of this call, else the values held here (references, not
    copies: a finished step donates them)."""
    optimizer = getattr(model, "optimizer", None)
    variables = [*model.variables, *(optimizer.variables if optimizer else ()),
                 *model.metrics_variables]
    values = [v.value for v in variables]
    earlier = getattr(model, "_jax_state", None)  # another call's, possibly stale
    try:
        yield
    except BaseException:
        if getattr(model, "_jax_state", None) is not earlier:  # a step of this call finished
            model.jax_state_sync()
        for variable, value in zip(variables, values):
            if variable._value is None and not value.is_deleted():  # emptied, never refilled
                variable.assign(value)
        raise


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
