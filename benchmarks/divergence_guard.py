"""What does the divergence guard cost? `fit` with it (checking every step, every 10th, and at
its default) against `fit` without it, on a small GAN where per-step overhead shows most.

Reading the logged means makes the host wait for the device, and on JAX it also copies the
training state back into the model: nothing much on TensorFlow, whose `fit` waits anyway, but
JAX loses its asynchronous dispatch when the guard reads often. The configuration is the ring
GAN of the notebooks (MLPs of width 64, batch 256). Every side calls `keras.Model.fit` directly,
with or without a guard (`Duel.fit` adds one and also checks the data eagerly). The sides are
timed in the same process, interleaved; the median of the repeats is reported.

    KERAS_BACKEND=jax python benchmarks/divergence_guard.py --steps 200 --repeats 5
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import alllib  # noqa: E402
from alllib import data, nets  # noqa: E402
from alllib.experiments import interleaved_medians  # noqa: E402

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
    fit = dict(batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    guard = alllib.callbacks.DivergenceGuard
    sides = {  # keras.Model.fit: the guard alone, without Duel.fit's eager check of the data
        "no guard": lambda: keras.Model.fit(gan, x, **fit),
        "guard, every=1": lambda: keras.Model.fit(gan, x, callbacks=[guard(every=1)], **fit),
        "guard, every=10": lambda: keras.Model.fit(gan, x, callbacks=[guard(every=10)], **fit),
        f"guard, default ({guard().every})": lambda: keras.Model.fit(
            gan, x, callbacks=[guard()], **fit),
    }
    seconds = interleaved_medians(sides, args.repeats)
    print(f"backend {keras.backend.backend()}, {args.steps} steps x {args.repeats} repeats, "
          f"batch {BATCH}, median")
    for name, t in seconds.items():
        print(f"  {name:<22} {args.steps / t:8.1f} steps/s   time / no guard = "
              f"{t / seconds['no guard']:5.2f}x")


if __name__ == "__main__":
    main()
