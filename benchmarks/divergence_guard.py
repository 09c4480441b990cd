"""What does the divergence guard cost? `fit` with it (checking every step, every 10th, and at
its default) against `fit` without it, on a small GAN where per-step overhead shows most.

Reading the logged means makes the host wait for the device, and on JAX it also copies the
training state back into the model: nothing much on TensorFlow, whose `fit` waits anyway, but
JAX loses its asynchronous dispatch when the guard reads often. The configuration is the ring
GAN of the notebooks (MLPs of width 64, batch 256). Every side calls `keras.Model.fit` directly,
with or without a guard (`Duel.fit` adds one and also checks the data eagerly), on batches
already on the device (`experiments.device_batches`; NumPy arrays on TensorFlow, whose `fit`
prefetches them). The sides are timed in the same process, interleaved, after a warm-up; the
median of the repeats is reported with the slowest and fastest.

    KERAS_BACKEND=jax python benchmarks/divergence_guard.py --steps 200 --repeats 5
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import alllib  # noqa: E402
from alllib import data, nets  # noqa: E402
from alllib.experiments import device_batches, interleaved_times, rate  # noqa: E402

BATCH = 256


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="steps per timed fit")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed fits per side")
    args = parser.parse_args()

    x = data.load("ring", n=BATCH * args.steps, seed=0)[0]
    keras.utils.set_random_seed(0)
    gan = alllib.GAN(nets.mlp_generator(2, width=64), nets.mlp_discriminator(width=64), 2)
    gan.compile(d_optimizer="adam", g_optimizer="adam")
    if keras.backend.backend() == "tensorflow":
        inputs = lambda: dict(x=x, batch_size=BATCH, shuffle=False)
    else:
        batches = device_batches(x.reshape(args.steps, BATCH, -1))
        inputs = lambda: dict(x=batches())

    def fit(*guards):  # keras.Model.fit: the guard alone, without Duel.fit's check of the data
        keras.Model.fit(gan, **inputs(), epochs=1, verbose=0, callbacks=list(guards))

    guard = alllib.callbacks.DivergenceGuard
    sides = {
        "no guard": fit,
        "guard, every=1": lambda: fit(guard(every=1)),
        "guard, every=10": lambda: fit(guard(every=10)),
        f"guard, default ({guard().every})": lambda: fit(guard()),
    }
    seconds = interleaved_times(sides, args.repeats)
    base = np.median(seconds["no guard"])
    print(f"backend {keras.backend.backend()} on {alllib.device_name()}, "
          f"{args.steps} steps x {args.repeats} repeats, batch {BATCH}, median (slowest-fastest)")
    for name, t in seconds.items():
        print(f"  {name:<22} {rate(t, args.steps):>32}   time / no guard = "
              f"{np.median(t) / base:5.2f}x")


if __name__ == "__main__":
    main()
