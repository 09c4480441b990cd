"""The backend interface on PyTorch: `torch.autograd.grad`, steps under `torch.no_grad`."""

import keras
import torch

MAX_STEPS_PER_EXECUTION = 1  # Keras's PyTorch trainer calls train_step once per step
SeedGenerator = keras.random.SeedGenerator


def gradients(loss_fn, variables):
    variables = list(variables)
    loss, aux = loss_fn()
    grads = torch.autograd.grad(loss, [v.value for v in variables], allow_unused=True)
    return loss, aux, list(grads)


def forward(fn, variables):
    variables = list(variables)
    outputs = fn()

    def pullback(g):
        return list(torch.autograd.grad(
            outputs, [v.value for v in variables], grad_outputs=g, allow_unused=True
        ))

    return outputs, pullback


def tensor_gradient(loss_fn, tensor, differentiable=False):
    tensor = tensor.detach().requires_grad_(True)
    loss, aux = loss_fn(tensor)
    return loss, aux, torch.autograd.grad(loss, tensor, create_graph=differentiable,
                                          allow_unused=True)[0]


def apply_gradients(optimizer, grads, variables):
    with torch.no_grad():
        optimizer.apply(grads, list(variables))


def train_step(model, round_fn, args):
    (data,) = args
    return round_fn(data)


test_step = train_step

