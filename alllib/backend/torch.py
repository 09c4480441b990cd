"""The backend interface on PyTorch: `torch.autograd.grad`, steps under `torch.no_grad`."""

import keras
import torch

MAX_STEPS_PER_EXECUTION = 1  # Keras's PyTorch trainer calls train_step once per step


class SeedGenerator(keras.random.SeedGenerator):
    """Keras's generator keeps its two-integer state where variables live, on the GPU, and each
    draw reads it back to seed a `torch.Generator`: a host synchronisation per random draw, so
    the host cannot queue the next step's kernels while the GPU runs this one. This one keeps the
    state on the CPU; the draws themselves (on the GPU) are the same numbers."""

    def __init__(self, *args, **kwargs):
        with keras.device("cpu"):
            super().__init__(*args, **kwargs)

    def next(self, ordered=True):
        with keras.device("cpu"):
            return super().next(ordered=ordered)


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


def separate_replicas():
    return 1  # no multi-device fit


def device_name():
    return f"GPU ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "CPU"
