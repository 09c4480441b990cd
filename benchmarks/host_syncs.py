"""Where does a training step make the host wait for the GPU? PyTorch backend, CUDA only.

A step that reads a GPU value on the host (`int(tensor)`, `if tensor:`, `.item()`, a blocking
copy) stops the host from queueing the next kernels while the GPU works, and small models then
run at the speed of Python. PyTorch reports every such read under
`torch.cuda.set_sync_debug_mode("warn")`; this script trains each model of the course for a few
steps under it, after a warm-up, and prints where the reads come from (the innermost frame in
alllib or Keras), with how many there were per step.

    KERAS_BACKEND=torch python benchmarks/host_syncs.py --steps 20
"""

import argparse
import collections
import os
import sys
import traceback
import warnings

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import alllib  # noqa: E402
from alllib import experiments, nets  # noqa: E402

SHAPE, BATCH, LATENT, CLASSES = (28, 28, 1), 128, 64, 10


def models():
    """name -> (compiled model, one batch of its fit input)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (BATCH, *SHAPE)).astype("float32")
    y = rng.integers(0, CLASSES, BATCH).astype("int32")
    gan = alllib.GAN(nets.dcgan_generator(LATENT, SHAPE, width=32),
                     nets.dcgan_discriminator(SHAPE, width=32), LATENT, seed=0)
    gan.compile(d_optimizer="adam", g_optimizer="adam")
    cgan = alllib.ConditionalGAN(nets.conditional_dcgan_generator(LATENT, CLASSES, SHAPE, width=32),
                                 nets.conditional_dcgan_discriminator(SHAPE, CLASSES, width=32),
                                 LATENT, num_classes=CLASSES, seed=0)
    cgan.compile(d_optimizer="adam", g_optimizer="adam", ema_decay=0.999)
    found = {"GAN": (gan, x), "ConditionalGAN (EMA)": (cgan, (x, y))}
    for name, method in [("label learner", {}), ("conditional learner + R1",
                                                  {"conditional": True, "penalty": "r1"}),
                         ("cross-entropy", {"kind": "ce"})]:
        model = experiments.build(method, SHAPE, CLASSES, seed=0)
        labels = y if method.get("kind") != "ce" else keras.utils.to_categorical(y, CLASSES)
        found[name] = (model, (x, labels))
    return found


def where(stack):
    """Who asked for the value: the innermost frame in alllib (or, if none, in the benchmark or
    Keras's trainer), then the innermost frame in Keras, which did the reading."""
    def short(frame):
        path = frame.filename.replace(os.sep, "/")
        for root in ("/alllib/", "/keras/src/", "/benchmarks/"):
            if root in path:
                path = path[path.rindex(root) + 1:]
        return f"{path}:{frame.lineno} ({(frame.line or '').strip()[:60]})"

    frames = [f for f in stack if "/torch/" not in f.filename.replace(os.sep, "/")]
    ours = [f for f in frames if "/alllib/" in f.filename.replace(os.sep, "/")]
    keras_frames = [f for f in frames if "/keras/" in f.filename.replace(os.sep, "/")]
    asker = ours[-1] if ours else (keras_frames[0] if keras_frames else frames[-1])
    reader = keras_frames[-1] if keras_frames else asker
    return short(asker) if reader is asker else f"{short(asker)} -> {short(reader)}"


def main():
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    if keras.backend.backend() != "torch" or not torch.cuda.is_available():
        sys.exit("host_syncs.py needs KERAS_BACKEND=torch and a CUDA GPU.")
    for name, (model, batch) in models().items():
        batches = experiments.device_batches(keras.tree.map_structure(lambda a: a[None], batch))
        model.fit(batches(repeat=3), epochs=1, verbose=0)  # warm-up
        sites = collections.Counter()

        def record(message, category, *rest):
            if "synchroniz" in str(message):  # not Keras's own warnings
                sites[where(traceback.extract_stack()[:-1])] += 1

        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings():  # restores showwarning afterwards
                warnings.simplefilter("always")
                warnings.showwarning = record
                model.fit(batches(repeat=args.steps), epochs=1, verbose=0)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        total = sum(sites.values())
        print(f"{name}: {total / args.steps:.1f} host synchronisations per step "
              f"({total} in {args.steps} steps, one fit)")
        for site, count in sites.most_common(10):
            print(f"  {count:5d}  {site}")


if __name__ == "__main__":
    main()
