"""Callbacks for watching adversarial training."""

import math
import os
import time
import warnings

import keras
import numpy as np
from keras import ops

from alllib import checks, metrics


class SampleGrid(keras.callbacks.Callback):
    """Generate from one fixed noise batch at the end of every `every` epochs.

    The same noise every time, so successive snapshots show how the generator's map changes.
    Snapshots are kept as `(epoch, samples)` in `self.snapshots` (for notebooks, see
    `alllib.plots.show_sample_history`), and optionally saved as PNG files in `directory` and
    as images in a TensorBoard log at `log_dir` (needs TensorFlow installed).

    Works with any model that has a `latent_dim` and `generate(n, noise=...)`: `alllib.GAN`
    (its moving average, when `compile` set `ema_decay`) and `alllib.ConditionalGAN` (the
    classes in turn).
    """

    def __init__(self, num_samples=64, seed=0, every=1, directory=None, log_dir=None):
        super().__init__()
        self.num_samples, self.seed, self.every = num_samples, seed, every
        self.directory, self.log_dir = directory, log_dir
        self.snapshots = []

    def on_train_begin(self, logs=None):
        self.noise = _fixed_noise(self.model, self.num_samples, self.seed)
        if self.log_dir:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "samples"))

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        samples = self.model.generate(len(self.noise), noise=self.noise)
        self.snapshots.append((epoch + 1, samples))
        if self.directory:
            os.makedirs(self.directory, exist_ok=True)
            self._save_png(samples, os.path.join(self.directory, f"epoch_{epoch + 1:04d}.png"))
        if self.log_dir:
            self._write_tensorboard(samples, epoch + 1)

    @staticmethod
    def _save_png(samples, path):
        import matplotlib.pyplot as plt

        from alllib import plots  # course tooling, imported only when a grid is drawn

        fig, ax = plt.subplots(figsize=(4, 4))
        plots.show_samples(samples, ax=ax)
        fig.savefig(path, dpi=80)
        plt.close(fig)

    def _write_tensorboard(self, samples, step):
        import tensorflow as tf

        from alllib import plots

        if samples.ndim == 2:  # points: log the rendered scatter plot
            import io

            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(4, 4))
            plots.show_samples(samples, ax=ax)
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=80)
            plt.close(fig)
            image = tf.image.decode_png(buffer.getvalue(), channels=4)[None]
        else:
            grid = plots.image_grid(samples)
            image = grid[None, ..., None] if grid.ndim == 2 else grid[None]
        with self._writer.as_default():
            tf.summary.image("samples", image, step=step)
        self._writer.flush()


class ImageScores(keras.callbacks.Callback):
    """The Frechet and kernel distances of a generator's images from real ones, in a judge's
    features, every `every` epochs: a GAN's losses tell who is winning the bout, not how good
    the samples are.

    The samples come from one fixed noise batch (for `ConditionalGAN`, the classes in turn);
    the kernel distance averages over subsets of half of them (at most 1,000).
    After `fit`, `history` holds one dict per measurement (every `fit` appends): `epoch`, `fd`,
    `kid`, `kid_std`, and when `compile` set `ema_decay`, the same three for the generator's own
    (not averaged) weights under `training_fd`, `training_kid` and `training_kid_std`.

    Args:
        judge: a `metrics.Judge`.
        real: real images to compare with (a held-out set: not the GAN's training images).
        num_samples: generated images per measurement (and real ones used, at most).
        kid_subsets: subsets the kernel distance averages over (fewer than
            `metrics.kernel_distance`'s 100: this runs every epoch).
    """

    def __init__(self, judge, real, num_samples=2000, every=1, kid_subsets=20, seed=0):
        super().__init__()
        self.kid_subsets = checks.integer("kid_subsets", kid_subsets, 1)
        self.judge, self.every = judge, checks.integer("every", every, 1)
        self.num_samples, self.seed = checks.integer("num_samples", num_samples, 2), seed
        self.real_features = judge.features(np.asarray(real)[:num_samples])
        self.history = []

    def on_train_begin(self, logs=None):
        self.noise = _fixed_noise(self.model, self.num_samples, self.seed)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        record = {"epoch": epoch + 1, **self._scores(averaged=True)}
        if getattr(self.model, "ema_decay", None) is not None:
            own = self._scores(averaged=False)
            record.update({f"training_{key}": value for key, value in own.items()})
        self.history.append(record)

    def _scores(self, averaged):
        samples = self.model.generate(self.num_samples, noise=self.noise, averaged=averaged)
        fake = self.judge.features(samples)
        kid, kid_std = metrics.kernel_distance(
            self.real_features, fake, subset_size=min(1000, max(2, len(fake) // 2)),
            subsets=self.kid_subsets, seed=self.seed,
        )
        return {"fd": metrics.frechet_distance(self.real_features, fake), "kid": kid,
                "kid_std": kid_std}


def _fixed_noise(model, n, seed):
    """One batch of generator noise drawn with NumPy: the same numbers on every backend."""
    return np.random.default_rng(seed).standard_normal((n, model.latent_dim)).astype("float32")


class EpochProgress(keras.callbacks.Callback):
    """A plain progress line per `interval` seconds of training (and one for the last epoch):
    epochs done, time taken and left, the latest epoch's logs. Use with `verbose=0`.

    Compact for long notebook runs, where Keras's own bar prints a line per epoch, and plain
    text: Keras's bar writes terminal colour codes into saved notebook outputs.
    """

    def __init__(self, interval=10.0):
        super().__init__()
        self.interval = checks.number("interval", interval)

    def on_train_begin(self, logs=None):
        self._start = self._last = time.perf_counter()
        self._first = None  # the first epoch of this fit (not 0 when resuming)

    def on_epoch_end(self, epoch, logs=None):
        now, total, done = time.perf_counter(), self.params["epochs"], epoch + 1
        if self._first is None:
            self._first = epoch
        elif now - self._last < self.interval and done != total:
            return
        self._last = now
        spent = now - self._start
        rate = spent / (done - self._first)
        left = f", about {_duration(rate * (total - done))} left" if done < total else ""
        values = " ".join(f"{key} {float(value):.4g}" for key, value in (logs or {}).items())
        width = len(str(total))
        print(f"epoch {done:>{width}}/{total} | {_duration(spent)}{left} | {values}", flush=True)


class RunProgress:
    """`EpochProgress` for a loop of whole runs (a sweep, an ablation): call `add()` after each
    run; prints `run 3/25 | 1m 20s, about 5m 10s left` at most every `interval` seconds and at
    the last run, in plain text (Keras's `Progbar` writes colour codes into saved notebooks)."""

    def __init__(self, total, unit="run", interval=30.0):
        self.total = checks.integer("total", total, 0)
        self.unit, self.interval = unit, checks.number("interval", interval)
        self.done, self._start = 0, time.perf_counter()
        self._last = self._start

    def add(self, n=1):
        self.done += n
        now = time.perf_counter()
        if now - self._last < self.interval and self.done < self.total:
            return
        self._last, spent = now, now - self._start
        left = (f", about {_duration(spent / self.done * (self.total - self.done))} left"
                if self.done < self.total else "")
        print(f"{self.unit} {self.done}/{self.total} | {_duration(spent)}{left}", flush=True)


def _duration(seconds):
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


class StepHistory(keras.callbacks.Callback):
    """Per-step values of every logged metric, recovered from Keras's running means.

    Keras logs the mean of each metric since the start of the epoch. After n steps with mean
    m_n, the value of the latest chunk of steps is (n m_n - k m_k) / (n - k), where k is the step
    count at the previous report: exact per step when `steps_per_execution=1` and batches have
    equal size, a mean over the chunk otherwise. Cheap enough to leave on. The means are float32,
    so a recovered value is only good to about 1e-7 times the epoch's running total: a value of
    1e-8 in an epoch whose first steps were 0.1 comes out as noise.

    After `fit`, `steps` holds the global step of each record and `values[key]` the values.
    """

    def __init__(self):
        super().__init__()
        self.steps, self.values, self._offset = [], {}, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._previous = (0, {})

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        count = _steps_done(self, batch)
        done, means = self._previous
        if count <= done:
            return
        for key, value in logs.items():
            total = count * float(value) - done * means.get(key, 0.0)
            self.values.setdefault(key, []).append(total / (count - done))
        self.steps.append(self._offset + count)
        self._previous = (count, {key: float(value) for key, value in logs.items()})

    def on_epoch_end(self, epoch, logs=None):
        self._offset += self._previous[0]


class DiscriminatorWins(StepHistory):
    """Warn once when the discriminator's accuracy stays at or above `threshold` for `patience`
    steps in a row: it is winning outright, the essay's failure, and its opponent's gradient
    may be vanishing (notebook 02). Reads the per-step `d_acc` that `StepHistory` recovers;
    `warned_at` is the step of the warning (None if there was none).
    """

    def __init__(self, threshold=0.99, patience=100):
        super().__init__()
        self.threshold = checks.number("threshold", threshold, 0.0, 1.0, high_inclusive=True)
        self.patience = checks.integer("patience", patience, 1)

    def on_train_begin(self, logs=None):
        self.streak, self.warned_at = 0, None

    def on_train_batch_end(self, batch, logs=None):
        seen = len(self.steps)
        super().on_train_batch_end(batch, logs)
        if len(self.steps) == seen:
            return
        covered = self.steps[-1] - (self.steps[-2] if seen else 0)  # steps in this report
        won = self.values["d_acc"][-1] >= self.threshold
        self.streak = self.streak + covered if won else 0
        if self.streak >= self.patience and self.warned_at is None:
            self.warned_at = self.steps[-1]
            warnings.warn(
                f"The discriminator is winning outright: its accuracy on real vs generated "
                f"examples has been >= {self.threshold:g} for the last {self.streak} steps "
                f"(to step {self.warned_at}). Its opponent's gradient may be vanishing; try the "
                "non-saturating loss, an R1 penalty or a slower discriminator (notebook 02).",
                stacklevel=2,
            )


class DiscriminatorGap(keras.callbacks.Callback):
    """Every `every` epochs, compare the training discriminator with a freshly trained one.

    Both judge held-out real data (`real_test`) against new generated samples. The training
    discriminator is scored as it stands; the fresh one, same architecture and new weights, is
    first trained for `epochs` epochs on `real_train` against as many generated samples
    (`metrics.fresh_discriminator`); the latest one is kept as `self.fresh`. A generator that
    has learned the data fools both; one that has learned its opponent's blind spots fools only the training one, so the
    gap between the two accuracies is the measurement. Records `(epoch, training, fresh)` in
    `self.records`. Costs a small training run per check, so keep `every` coarse. Samples are
    generated in inference mode (BatchNorm running statistics), as `generate` does. For a
    Wasserstein critic, whose scores have no fixed zero, the training accuracy uses threshold 0
    and means little.
    """

    def __init__(self, real_train, real_test, every=10, epochs=20):
        super().__init__()
        self.real_train, self.real_test = np.asarray(real_train), np.asarray(real_test)
        self.every = checks.integer("every", every, 1)
        self.epochs = checks.integer("epochs", epochs, 1)
        self.records, self.fresh = [], None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        gan = self.model
        fake_train = gan.generate(len(self.real_train), seed=2 * epoch, averaged=False)
        fake_test = gan.generate(len(self.real_test), seed=2 * epoch + 1, averaged=False)
        threshold = gan.loss_fn.threshold
        training = metrics.logit_accuracy(gan.discriminator, self.real_test, fake_test, threshold)
        self.fresh = metrics.fresh_discriminator(
            gan.discriminator, self.real_train, fake_train, epochs=self.epochs, seed=epoch
        )
        fresh = metrics.logit_accuracy(self.fresh, self.real_test, fake_test)
        self.records.append((epoch + 1, training, fresh))


class GradientProbe(keras.callbacks.Callback):
    """Before training and every `every` steps, `metrics.predictor_gradient_norms` of an
    `AdversarialLabelLearner` on one fixed batch `(x, y)`: the predictor's gradient from each
    term and the adversarial gradient factored at the softmax, to see *why* a gradient vanishes.
    Runs eagerly between steps (it waits for the device), so keep `every` in the dozens.

    After `fit`, `steps` holds the global step of each probe (0: before the first step) and
    `values[key]` the norms.
    """

    def __init__(self, x, y, every=50):
        super().__init__()
        self.x, self.y = np.asarray(x), np.asarray(y)
        self.every = checks.integer("every", every, 1)
        self.steps, self.values, self._offset, self._done = [], {}, 0, 0

    def on_train_begin(self, logs=None):
        if not self.steps:
            self._probe(0)

    def on_epoch_begin(self, epoch, logs=None):
        self._offset = self._done

    def on_train_batch_end(self, batch, logs=None):
        done = self._offset + _steps_done(self, batch)
        if done // self.every > self._done // self.every:
            self._probe(done)
        self._done = done

    def _probe(self, step):
        for key, value in metrics.predictor_gradient_norms(self.model, self.x, self.y).items():
            self.values.setdefault(key, []).append(value)
        self.steps.append(step)


class DivergenceGuard(keras.callbacks.Callback):
    """Stop training when a loss or gradient norm went NaN or infinite, naming players and steps.

    The check runs in the graph: Keras logs running means over the epoch, and a mean stays
    non-finite once one value was. The guard reads those means before every `every`-th step and
    at each epoch's end, and names the steps since its last clean check; `every=1` (with
    `steps_per_execution=1`) pinpoints the round. A NaN reaches the other players within a
    round (a discriminator reads the generator's samples, the generator the discriminator it has
    just updated), so when several players went non-finite in the same round the message names
    them all, the first to move (the likely origin) first. `Duel.fit` adds one unless given its
    own. Raises `FloatingPointError`.

    Reading a value waits for the device, and on JAX it copies the training state back into the
    model, so the default reads rarely: every 100 steps, which costs a few percent at most on a
    tiny model (`benchmarks/divergence_guard.py`). The guard has no per-batch-end hook, so Keras
    keeps dispatching steps asynchronously.
    """

    def __init__(self, every=100):
        super().__init__()
        self.every = checks.integer("every", every, 1)

    def on_epoch_begin(self, epoch, logs=None):
        # Read here rather than at the start of fit: BackupAndRestore may restore it in between.
        self._start = int(ops.convert_to_numpy(self.model.optimizer.iterations))
        self._epoch, self._clean = epoch, 0

    def on_train_batch_begin(self, batch, logs=None):
        if batch // self.every > self._clean // self.every:  # a multiple of `every` since
            model = self.model
            names = {f"{p.prefix}_{s}" for p in model.moving_players for s in ("loss", "grad_norm")}
            self._check(batch, {m.name: m.result() for m in model.metrics if m.name in names})

    def on_epoch_end(self, epoch, logs=None):
        self._check((self.params or {}).get("steps") or self._clean + 1, logs or {})

    def _check(self, done, logs):
        """Raise if the means after `done` steps of this epoch are not all finite."""
        found = {}
        for player in self.model.moving_players:
            for suffix, quantity in (("loss", "loss"), ("grad_norm", "gradient norm")):
                value = float(logs[f"{player.prefix}_{suffix}"])
                if not math.isfinite(value):
                    found.setdefault(player.name, []).append(f"{quantity} is {value}")
        if found:
            self._raise(found, self._clean, done)
        self._clean = done

    def _raise(self, found, clean, done):
        if done - clean == 1:
            where = f"step {done} (round {self._start + done}"
        else:
            where = (f"steps {clean + 1}-{done} (rounds {self._start + clean + 1}-"
                     f"{self._start + done}")
        what = "; ".join(f"the {player}'s {' and '.join(q)}" for player, q in found.items())
        several = ""
        if len(found) > 1 and done - clean > 1:
            several = (f" {_players(list(found)).capitalize()} went non-finite in these steps; "
                       "checking every step (steps_per_execution=1, "
                       "DivergenceGuard(every=1)) would narrow it to one round.")
        elif len(found) > 1:
            mover, *others = found
            several = (f" {_players(list(found)).capitalize()} went non-finite in the same "
                       f"round: the {mover} moved first, so it is the likely origin, but it "
                       f"reads the outputs of {_players(others)}, which may have started it.")
        raise FloatingPointError(
            f"Training diverged at epoch {self._epoch + 1}, {where} of its training): {what}."
            f"{several} Lower the learning rates, add a gradient penalty, or check the data."
        )


def _steps_done(callback, batch):
    """Steps of this epoch done when `on_train_batch_end(batch)` arrives. Keras reports a chunk
    of `steps_per_execution` steps by its nominal last step, past the epoch's end for a short one."""
    return min(batch + 1, (callback.params or {}).get("steps") or batch + 1)


def _players(names):
    """'the generator', 'the discriminator and the generator', 'the a, the b and the c'."""
    names = [f"the {name}" for name in names]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
