"""What does the adversarial label learner cost per step, relative to plain cross-entropy?

The same predictor (`alllib.nets.conv_predictor`, the `"predictor": "conv"` of
`alllib.experiments`) is trained by `fit` under each method on the same batch, in one process,
interleaved, on the current Keras backend (KERAS_BACKEND); see `experiments.step_times`. The
discriminators are `alllib.nets.label_discriminator` (width 64): label-only for the essay's
learner, `[x, label_vector]` for the conditional ones. Their multiply-accumulates per example
are printed next to the predictor's. Data is synthetic (speed does not depend on pixel values)
and, on JAX and PyTorch, handed to `fit` already on the device (`--data numpy` for NumPy input).
The median over the repeats is reported with the slowest and fastest.

Targets: the unconditional learner at most 1.3x the CE step; the conditional one at most 1.6x
with a discriminator of at most a quarter of the predictor's FLOPs.

    KERAS_BACKEND=torch python benchmarks/all_step.py --steps 30 --repeats 3
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import alllib  # noqa: E402
from alllib import experiments, nets  # noqa: E402

SHAPES = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
PREDICTOR = "conv"
METHODS = {  # each on the same convolutional predictor
    "ce": ({"kind": "ce", "predictor": PREDICTOR}, None),
    "adversarial (label-only D)": ({"predictor": PREDICTOR}, 1.3),
    "conditional D": ({"conditional": True, "predictor": PREDICTOR}, 1.6),
    "conditional D + R1": ({"conditional": True, "penalty": "r1", "predictor": PREDICTOR}, None),
}


def macs(model):
    """Multiply-accumulates per example of the Dense and Conv2D layers (the bulk of the work)."""
    total = 0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        if len(kernel.shape) == 4:  # Conv2D: every output position applies the whole kernel
            height, width = layer.output.shape[1:3]
            total += int(np.prod(kernel.shape)) * height * width
        else:
            total += int(np.prod(kernel.shape))
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="mnist")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed blocks")
    parser.add_argument("--data", choices=["device", "numpy"], default=None,
                        help="the input of fit: backend tensors (default on JAX and PyTorch) or "
                             "NumPy arrays (default on TensorFlow)")
    args = parser.parse_args()
    data = args.data or ("numpy" if keras.backend.backend() == "tensorflow" else "device")

    shape, classes = SHAPES[args.shape], 10
    predictor = experiments.make_predictor(PREDICTOR, shape, classes)
    label_only = nets.label_discriminator(classes)
    conditional = nets.label_discriminator(classes, input_shape=shape)
    print(f"backend {keras.backend.backend()} on {alllib.device_name()} | "
          f"{args.shape}-sized input {shape} | batch {args.batch} | data: {data}")
    print(f"MACs per example: predictor {macs(predictor):,}; label-only D {macs(label_only):,} "
          f"({macs(label_only) / macs(predictor):.3%}); conditional D {macs(conditional):,} "
          f"({macs(conditional) / macs(predictor):.3%} of the predictor)")

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.batch, *shape)).astype("float32")
    y = rng.integers(0, classes, args.batch).astype("int32")
    seconds = experiments.step_times({name: m for name, (m, _) in METHODS.items()}, x, y, classes,
                                     batch_size=args.batch, steps=args.steps, repeats=args.repeats,
                                     on_device=data == "device")
    print("\n| method | ms/step, median (fastest-slowest) | ratio to CE | target |")
    print("|---|---|---|---|")
    ce = np.median(seconds["ce"])
    for name, (_, target) in METHODS.items():
        ms, ratio = 1000 * seconds[name], np.median(seconds[name]) / ce
        verdict = "" if target is None else f"<= {target}x: {'met' if ratio <= target else 'missed'}"
        print(f"| {name} | {np.median(ms):.2f} ({ms.min():.2f}-{ms.max():.2f}) | {ratio:.2f}x | "
              f"{verdict} |")


if __name__ == "__main__":
    main()
