"""`SoftTargets`: the essay's soft, slightly randomized ground-truth label vectors.
A one-hot label is trivially told from a softmax output (one nonzero entry), so the essay never
shows the discriminator one; Luc et al. (2016) moved the ground truth toward the prediction."""

import keras
from keras import ops

from alllib import checks


@keras.saving.register_keras_serializable(package="alllib")
class SoftTargets:
    """Turns one-hot labels into soft, optionally random, target vectors.

    Args:
        epsilon: label smoothing (Szegedy et al. 2016) in [0, 1): the mean target is
            `(1 - epsilon) * one_hot + epsilon / K`.
        concentration: each target is drawn from a Dirichlet with parameters `concentration *
            mean` (larger is less noisy), or None for the mean itself. Needs `epsilon > 0`: a
            zero parameter would make the off classes exactly zero anyway."""

    def __init__(self, epsilon=0.1, concentration=50.0):
        epsilon = checks.number("epsilon", epsilon, 0.0, 1.0)
        if concentration is not None:
            concentration = checks.number("concentration", concentration)
            if concentration == 0:
                raise ValueError("`concentration` must be None or a positive number; received 0.")
            if epsilon == 0:
                raise ValueError(
                    "`concentration` (random targets) needs `epsilon` > 0; use "
                    "SoftTargets(0.0, concentration=None) for hard one-hot targets."
                )
        self.epsilon = float(epsilon)
        self.concentration = None if concentration is None else float(concentration)

    def mean(self, one_hot):
        """The expected target for a batch of one-hot labels."""
        num_classes = one_hot.shape[-1]
        return (1.0 - self.epsilon) * one_hot + self.epsilon / num_classes

    def __call__(self, one_hot, seed=None):
        """Draw one target per row of the float one-hot batch `one_hot`, shape `(batch, K)`."""
        mean = self.mean(one_hot)
        if self.concentration is None:
            return mean
        # Two Dirichlet parameters (true class, others): scalar-shape gammas work on every backend.
        num_classes = one_hot.shape[-1]
        shape = ops.shape(one_hot)
        on = keras.random.gamma(
            shape, self.concentration * (1.0 - self.epsilon + self.epsilon / num_classes),
            dtype=one_hot.dtype, seed=seed,
        )
        off = keras.random.gamma(
            shape, self.concentration * self.epsilon / num_classes, dtype=one_hot.dtype, seed=seed
        )
        draws = one_hot * on + (1.0 - one_hot) * off
        total = ops.sum(draws, axis=-1, keepdims=True)
        # Tiny parameters can underflow a whole row to 0: it gets the mean target, not 0 / 0.
        safe_total = ops.where(total > 0, total, ops.ones_like(total))
        return ops.where(total > 0, draws / safe_total, mean)

    def get_config(self):
        return {"epsilon": self.epsilon, "concentration": self.concentration}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"SoftTargets(epsilon={self.epsilon}, concentration={self.concentration})"
