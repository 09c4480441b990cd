"""The backend interface on PyTorch: `torch.autograd.grad`, steps under `torch.no_grad`."""

import keras
import torch

MAX_STEPS_PER_EXECUTION = 1  # Keras's PyTorch trainer calls train_step once per step
SeedGenerator = keras.random.SeedGenerator


def gradients(loss_fn, variables):
    variables = list(variables)
    loss, aux = loss_fn()
    grads = torch.autograd.grad(loss, [v.value for v in variables], allow_unused=True)
    return loss, aux, _zeros_for_none(grads, variables)


def forward(fn, variables):
    variables = list(variables)
    outputs = fn()

    def pullback(g):
        grads = torch.autograd.grad(
            outputs, [v.value for v in variables], grad_outputs=g, allow_unused=True
        )
        return _zeros_for_none(grads, variables)

    return outputs, pullback


def tensor_gradient(loss_fn, tensor, differentiable=False):
    tensor = tensor.detach().requires_grad_(True)
    loss, aux = loss_fn(tensor)
    return loss, aux, torch.autograd.grad(loss, tensor, create_graph=differentiable)[0]


def apply_gradients(optimizer, grads, variables):
    with torch.no_grad():
        optimizer.apply(grads, list(variables))


def train_step(model, round_fn, args):
    (data,) = args
    return round_fn(data)


test_step = train_step


def _zeros_for_none(grads, variables):
    # As on the other backends, a variable the loss does not reach gets zeros, not None.
    return [keras.ops.zeros_like(v.value) if g is None else g for g, v in zip(grads, variables)]
