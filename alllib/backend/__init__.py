"""The only backend-specific code in alllib: one file per framework, chosen once, at import.
Two things a duel needs differ between frameworks: "differentiate this loss with respect to these
variables only" and the `train_step` signature (JAX passes the model's state in and wants it
back). Each file answers with this interface; the rest of alllib is written once in `keras.ops`.
- `gradients(loss_fn, variables) -> (loss, aux, grads)`: run `loss_fn() -> (loss, aux)` and
  differentiate the loss with respect to `variables` only; None for a variable it does not reach.
- `forward(fn, variables) -> (outputs, pullback)`: run `fn()` once; `pullback(output_grads)`
  later gives the gradients of `sum(outputs * output_grads)` with respect to `variables` (None
  where unreached).
- `tensor_gradient(loss_fn, tensor, differentiable=False) -> (loss, aux, grad)`: the same for
  `loss_fn(tensor)` and `tensor` (None if unreached); `differentiable=True` (penalties) keeps
  `grad` differentiable.
- `apply_gradients(optimizer, grads, variables)`: one optimizer step, outside autograd.
- `SeedGenerator`: a `keras.random.SeedGenerator` drawing differently on `tf.distribute` replicas.
- `train_step(model, round_fn, args)`, `test_step(model, batch_fn, args)`: call `round_fn(data)
  -> logs` as this backend calls `train_step(*args)` (`test_step`).
- `device_name()`: where this backend computes, in words ("GPU (NVIDIA H200)", "CPU").
- `separate_replicas()`: how many replicas each play the round on their own slice of the batch
  (`tf.distribute`); 1 where the round is one program, as under JAX's `DataParallel`.
- `MAX_STEPS_PER_EXECUTION`: steps `fit` may run per call into the backend (Keras's PyTorch
  trainer runs exactly one), or None for no limit.
- `state_kept(model)`: a context for `fit` and `evaluate` that gives the model back its variables
  if Keras failed before refilling them (JAX only; elsewhere Keras never empties them)."""

import contextlib
import importlib

import keras

NAME = keras.backend.backend()
if NAME not in ("tensorflow", "jax", "torch"):
    raise ImportError(f"alllib supports the tensorflow, jax and torch backends, not {NAME!r}.")
_impl = importlib.import_module(f"alllib.backend.{NAME}")

gradients = _impl.gradients
forward = _impl.forward
tensor_gradient = _impl.tensor_gradient
apply_gradients = _impl.apply_gradients
SeedGenerator = _impl.SeedGenerator
train_step = _impl.train_step
test_step = _impl.test_step
MAX_STEPS_PER_EXECUTION = _impl.MAX_STEPS_PER_EXECUTION
device_name = _impl.device_name
separate_replicas = _impl.separate_replicas
state_kept = getattr(_impl, "state_kept", lambda model: contextlib.nullcontext())


def steps_per_execution(requested):
    """How many of `requested` steps per call into the backend `fit` can run here."""
    return min(requested, MAX_STEPS_PER_EXECUTION or requested)
