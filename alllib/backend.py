"""The only backend-specific code in alllib.

Two-player models need two things Keras does not give a custom `train_step` for free on every
backend: "differentiate this loss with respect to these variables and step this optimizer", and
a single `train_step` signature. Everything else in alllib is written once with `keras.ops`.

- `gradients(loss_fn, variables)` runs `loss_fn()` and takes the gradient of its loss with
  respect to `variables` only; `minimize(loss_fn, variables, optimizer)` also applies it.
- `forward(fn, variables)` runs a forward pass once and returns a pullback for later, and
  `tensor_gradient(loss_fn, tensor)` differentiates with respect to a tensor: together they let
  two players share one forward pass of a network. `tensor_gradient` also gives gradient
  penalties their differentiable input gradient.
- `apply(optimizer, grads, variables)` steps an optimizer; under a `tf.distribute` strategy
  it divides the gradients by the number of replicas first (`replica_share`). It returns the
  gradients as applied, for the logs.
- `scaled(loss_fn, optimizer)` multiplies a loss by the loss scale of a
  `keras.optimizers.LossScaleOptimizer` (float16 training), which `apply` divides out again.
- `SeedGenerator` gives every `tf.distribute` replica its own random draws.
- `run_train_step(model, step_fn, args)` (and `run_test_step`) adapt `step_fn(data) -> logs` to
  the backend's `train_step` (`test_step`): on TensorFlow and PyTorch it is called directly; on
  JAX, whose trainer passes the whole model state in and expects it back, the step runs inside a
  `keras.StatelessScope` that maps every variable to its incoming value, and the new state is
  read back from that scope.
"""

import keras

BACKEND = keras.backend.backend()
_scopes = []  # JAX: the StatelessScopes alllib has open while tracing, innermost last


def gradients(loss_fn, variables):
    """Run `loss_fn()`, which returns `(loss, aux)`, and differentiate the loss.

    Returns `(loss, aux, grads)`, the gradients with respect to `variables` only. `loss_fn`
    reads variables the ordinary Keras way.
    """
    variables = list(variables)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss, aux = loss_fn()
        return loss, aux, tape.gradient(loss, variables)
    if BACKEND == "torch":
        import torch

        loss, aux = loss_fn()
        grads = torch.autograd.grad(loss, [v.value for v in variables], allow_unused=True)
        return loss, aux, _zeros_for_none(grads, variables)
    if BACKEND == "jax":
        import jax

        pure, values, commit = _jax_pure(loss_fn, variables)
        (loss, (aux, writes)), grads = jax.value_and_grad(pure, has_aux=True)(values)
        commit(writes)
        return loss, aux, grads
    raise NotImplementedError(f"alllib does not support the {BACKEND!r} backend.")


def forward(fn, variables):
    """Run `fn()` once and keep what its backward pass needs.

    Returns `(outputs, pullback)`; `pullback(output_grads)` returns the gradients of
    `sum(outputs * output_grads)` with respect to `variables`. One forward pass can then serve
    two players: the first uses `outputs` as constants, the second pulls its gradient back later.
    """
    variables = list(variables)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            outputs = fn()
        return outputs, lambda g: tape.gradient(outputs, variables, output_gradients=g)
    if BACKEND == "torch":
        import torch

        outputs = fn()

        def pullback(g):
            grads = torch.autograd.grad(
                outputs, [v.value for v in variables], grad_outputs=g, allow_unused=True
            )
            return _zeros_for_none(grads, variables)

        return outputs, pullback
    if BACKEND == "jax":
        import jax

        pure, values, commit = _jax_pure(lambda: (fn(), ()), variables)
        outputs, vjp, (_, writes) = jax.vjp(pure, values, has_aux=True)
        commit(writes)
        return outputs, lambda g: vjp(g)[0]
    raise NotImplementedError(f"alllib does not support the {BACKEND!r} backend.")


def tensor_gradient(loss_fn, tensor, differentiable=False):
    """Run `loss_fn(tensor)`, which returns `(loss, aux)`; return `(loss, aux, d loss / d tensor)`.

    The variables `loss_fn` reads are not differentiated here. With `differentiable=True` the
    returned gradient can itself be differentiated with respect to them (gradient penalties).
    """
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(tensor)
            loss, aux = loss_fn(tensor)
        return loss, aux, tape.gradient(loss, tensor)
    if BACKEND == "torch":
        import torch

        tensor = tensor.detach().requires_grad_(True)
        loss, aux = loss_fn(tensor)
        return loss, aux, torch.autograd.grad(loss, tensor, create_graph=differentiable)[0]
    if BACKEND == "jax":
        import jax

        pure, _, commit = _jax_pure(loss_fn, [])
        (loss, (aux, writes)), grad = jax.value_and_grad(
            lambda t: pure([], t), has_aux=True
        )(tensor)
        commit(writes)
        return loss, aux, grad
    raise NotImplementedError(f"alllib does not support the {BACKEND!r} backend.")


def scaled(loss_fn, optimizer):
    """`loss_fn` as differentiated on behalf of `optimizer`: returns `(loss * scale, (loss, aux))`.

    The scale is that of a `LossScaleOptimizer` (float16 training: it keeps small gradients from
    underflowing in the backward pass), else 1. `apply` divides the gradients by it again.
    """

    def fn(*args):
        loss, aux = loss_fn(*args)
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            return optimizer.scale_loss(loss), (loss, aux)
        return loss, (loss, aux)

    return fn


def apply(optimizer, grads, variables):
    """`optimizer.apply(grads, variables)`, outside autograd on PyTorch; under a
    `tf.distribute` strategy each replica applies its share (see `replica_share`).

    Returns the gradients as the step applied them, for the logs: a `LossScaleOptimizer`'s
    divided by its loss scale, or all zeros for a step it skips because they are not finite
    (a skipped step moves nothing, and an infinite norm would spoil the epoch's mean).
    """
    variables = list(variables)
    applied = _unscaled(optimizer, grads)  # before `apply` changes the scale
    if BACKEND == "torch":
        import torch

        with torch.no_grad():
            optimizer.apply(grads, variables)
    elif BACKEND == "jax" and isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        # Its `apply` assigns variables inside `ops.cond` branches, which JAX cannot trace in a
        # stateless scope; `stateless_apply` returns the new values instead.
        new_values, new_state = optimizer.stateless_apply(
            [v.value for v in optimizer.variables], grads, [v.value for v in variables]
        )
        for variable, value in zip(variables + optimizer.variables, new_values + new_state):
            variable.assign(value)
    else:
        optimizer.apply(replica_share(grads), variables)
    return applied


def replica_share(grads):
    """This replica's share of the gradients: `grads / num_replicas_in_sync` on TensorFlow.

    Under a `tf.distribute` strategy (several GPUs) each replica computes the gradient of the
    mean loss on its slice of the batch, and `optimizer.apply` sums the replicas' gradients;
    dividing first makes that sum their mean, the gradient on the global batch (Keras's own losses
    do the same, by scaling the loss). Unchanged on one device, and on JAX, whose data parallelism
    computes the global batch's mean directly.
    """
    if BACKEND != "tensorflow":
        return grads
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas == 1:
        return grads
    return [None if g is None else tf.math.scalar_mul(1.0 / replicas, g) for g in grads]


def minimize(loss_fn, variables, optimizer):
    """Apply one `optimizer` step to `variables` on the loss returned by `loss_fn`.

    Returns `(loss, aux, grads)` like `gradients`, with the gradients as `apply` returns them.
    Variables other than `variables` (the opponent's weights) are never updated, whatever the
    loss depends on.
    """
    variables = list(variables)
    _, (loss, aux), grads = gradients(scaled(loss_fn, optimizer), variables)
    return loss, aux, apply(optimizer, grads, variables)


def _unscaled(optimizer, grads):
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return grads
    finite = optimizer.check_finite(grads)
    scale = optimizer.dynamic_scale
    return [
        g if g is None else keras.ops.where(finite, g / keras.ops.cast(scale, g.dtype), 0.0)
        for g in grads
    ]


class SeedGenerator(keras.random.SeedGenerator):
    """A `keras.random.SeedGenerator` whose draws differ between `tf.distribute` replicas.

    Every replica of a TensorFlow strategy reads the same seed state, so Keras's own generator
    gives each replica the same noise: on two GPUs a GAN would see half as many distinct noise
    vectors per batch. This one offsets the drawn seed by the replica's index. Anywhere else
    (one device, JAX's single global program) it is Keras's generator unchanged.
    """

    def next(self, ordered=True):
        seed = super().next(ordered=ordered)
        if BACKEND != "tensorflow":
            return seed
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return seed
        replica = tf.cast(context.replica_id_in_sync_group, seed.dtype)
        return seed + tf.stack([replica * 7919, tf.zeros_like(replica)])  # a prime stride


def steps_per_execution(requested):
    """How many steps `fit` may run per call into the backend: Keras's PyTorch trainer runs
    exactly one; TensorFlow and JAX can loop over several."""
    return 1 if BACKEND == "torch" else requested


def _zeros_for_none(grads, variables):
    return [keras.ops.zeros_like(v.value) if g is None else g for g, v in zip(grads, variables)]


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
        if value is None and self.parent is not None:
            value = self.parent.get_current_value(variable)
        return value


def _jax_pure(fn, variables):
    """Make `fn` a pure function of the values of `variables` (JAX).

    Returns `(pure, values, commit)`. `pure(values, *args)` runs `fn(*args)`, which returns
    `(out, aux)`, inside a scope mapping `variables` to `values`, and returns
    `(out, (aux, writes))`; `writes` are the new values of the other variables `fn` assigned
    (BatchNorm statistics, seed state), which `commit(writes)` stores in the enclosing scope.
    Variables resolve through the innermost scope alllib has open (the train step's, or that of
    an enclosing differentiation); outside any (an eager diagnostic), through their own values.
    """
    parent = _scopes[-1] if _scopes else None
    differentiated = {id(v) for v in variables}
    written = []

    def pure(values, *args):
        with _GradScope(parent, zip(variables, values)) as scope:
            _scopes.append(scope)  # a nested differentiation (a penalty) reads through it
            try:
                out, aux = fn(*args)
            finally:
                _scopes.pop()
        writes = [u for k, u in scope.writes.items() if k not in differentiated]
        written[:] = [variable for variable, _ in writes]
        return out, (aux, [value for _, value in writes])

    def commit(writes):
        for variable, value in zip(written, writes):
            variable.assign(value)

    if parent is None:
        values = [v.value for v in variables]
    else:
        values = [parent.get_current_value(v) for v in variables]
    return pure, values, commit


def run_train_step(model, step_fn, args):
    """Call `step_fn(data)` as `model.train_step(*args)` would be called on this backend."""
    return _run_step(
        args,
        step_fn,
        (
            model.trainable_variables,
            model.non_trainable_variables,
            model.optimizer.variables,
            model.metrics_variables,
        ),
    )


def run_test_step(model, step_fn, args):
    """Call `step_fn(data)` as `model.test_step(*args)` would be called on this backend."""
    return _run_step(
        args,
        step_fn,
        (model.trainable_variables, model.non_trainable_variables, model.metrics_variables),
    )


def _run_step(args, step_fn, groups):
    if BACKEND != "jax":
        (data,) = args
        return step_fn(data)

    state, data = args
    mapping = [(v, value) for vs, values in zip(groups, state) for v, value in zip(vs, values)]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        _scopes.append(scope)
        try:
            logs = step_fn(data)
        finally:
            _scopes.pop()
    new_state = tuple(
        [_or(scope.get_current_value(v), value) for v, value in zip(vs, values)]
        for vs, values in zip(groups, state)
    )
    return logs, new_state


def _or(value, default):
    return default if value is None else value
