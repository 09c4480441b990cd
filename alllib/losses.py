"""Adversarial losses and discriminator penalties, shared by every two-player model in alllib.

Each loss is a pair: what the discriminator minimises given its scores on real and generated
examples, and what the generator (or predictor) minimises given the scores of its own outputs.
Scores are raw discriminator outputs. The logistic losses read them as logits and apply the
sigmoid themselves, stably (`softplus(-s) = -log sigmoid(s)`, `softplus(s) = -log(1 - sigmoid(s))`).
"""

from collections import namedtuple

from keras import ops, random

from alllib import backend, checks

AdversarialLoss = namedtuple("AdversarialLoss", "discriminator generator logistic threshold")


def _logistic_discriminator_loss(real, fake):
    # Binary cross-entropy averaged over the real half (label 1) and the fake half (label 0):
    # exactly what Keras computes for one concatenated batch of real and fake examples.
    return 0.5 * (ops.mean(ops.softplus(-real)) + ops.mean(ops.softplus(fake)))


def _non_saturating_generator_loss(fake):
    # -log D(G(z)): binary cross-entropy against the label "real", as in the essay's
    # combined model. Its gradient is large when D confidently rejects the fakes.
    return ops.mean(ops.softplus(-fake))


def _minimax_generator_loss(fake):
    # log(1 - D(G(z))): Goodfellow's original objective. It saturates (gradient -> 0)
    # exactly when D confidently rejects the fakes, which is early in training.
    return -ops.mean(ops.softplus(fake))


def _wasserstein_discriminator_loss(real, fake):
    # The critic widens the gap between its mean score on real and on generated examples
    # (Arjovsky et al. 2017); it needs a Lipschitz constraint, such as the gradient penalty.
    return ops.mean(fake) - ops.mean(real)


def _hinge_discriminator_loss(real, fake):
    # Scores beyond the margin of 1 cost nothing (Lim and Ye 2017; Miyato et al. 2018).
    return ops.mean(ops.relu(1.0 - real)) + ops.mean(ops.relu(1.0 + fake))


def _raise_score_loss(fake):
    # The generator side of both the Wasserstein and the hinge game.
    return -ops.mean(fake)


def _least_squares_discriminator_loss(real, fake):
    # Mao et al. 2017: regress real scores to 1 and fake scores to 0.
    return 0.5 * (ops.mean(ops.square(real - 1.0)) + ops.mean(ops.square(fake)))


def _least_squares_generator_loss(fake):
    return 0.5 * ops.mean(ops.square(fake - 1.0))


LOSSES = {
    "non_saturating": AdversarialLoss(
        _logistic_discriminator_loss, _non_saturating_generator_loss, True, 0.0
    ),
    "minimax": AdversarialLoss(_logistic_discriminator_loss, _minimax_generator_loss, True, 0.0),
    "wasserstein": AdversarialLoss(_wasserstein_discriminator_loss, _raise_score_loss, False, 0.0),
    "hinge": AdversarialLoss(_hinge_discriminator_loss, _raise_score_loss, False, 0.0),
    "least_squares": AdversarialLoss(
        _least_squares_discriminator_loss, _least_squares_generator_loss, False, 0.5
    ),
}
PENALTIES = ("r1", "gradient_penalty")


def check(name):
    """Return `name` if it is a known adversarial loss, else raise a ValueError listing them."""
    if name not in LOSSES:
        raise ValueError(
            f"Unknown adversarial loss {name!r} for argument `loss`; expected one of "
            f"{sorted(LOSSES)}."
        )
    return name


def check_penalty(name, weight):
    """Validate a penalty name (or None) and its weight; return them."""
    if name is not None and name not in PENALTIES:
        raise ValueError(
            f"Unknown penalty {name!r} for argument `penalty`; expected None or one of "
            f"{list(PENALTIES)}."
        )
    return name, checks.number("penalty_weight", weight)


def discriminator_loss(name, real_scores, fake_scores, label_smoothing=0.0):
    """The discriminator's loss. `label_smoothing` s (logistic losses only) is one-sided
    smoothing (Salimans et al. 2016): real examples get the target 1 - s, fakes keep 0. With
    t = 1 - s the real half's cross-entropy is t softplus(-r) + (1 - t) softplus(r), which is
    softplus(-r) + s r."""
    real, fake = ops.cast(real_scores, "float32"), ops.cast(fake_scores, "float32")
    loss = LOSSES[name].discriminator(real, fake)
    if label_smoothing:
        loss = loss + 0.5 * label_smoothing * ops.mean(real)
    return loss


def generator_loss(name, fake_scores):
    return LOSSES[name].generator(ops.cast(fake_scores, "float32"))


def discriminator_accuracy(name, real_scores, fake_scores):
    """How often the discriminator puts real above and fake below its decision threshold."""
    return threshold_accuracy(real_scores, fake_scores, LOSSES[name].threshold)


def threshold_accuracy(real_scores, fake_scores, threshold):
    """Balanced accuracy: the mean of (real scores above `threshold`) and (fake ones below)."""
    real, fake = ops.cast(real_scores, "float32"), ops.cast(fake_scores, "float32")
    return 0.5 * (
        ops.mean(ops.cast(real > threshold, "float32"))
        + ops.mean(ops.cast(fake < threshold, "float32"))
    )


def readable_score(name, scores):
    """Mean score as a probability of "real" for logistic losses, raw otherwise."""
    scores = ops.cast(scores, "float32")
    return ops.mean(ops.sigmoid(scores) if LOSSES[name].logistic else scores)


def penalty(name, score_fn, real, fake, seed=None):
    """A penalty on the discriminator's input gradient, added to its loss.

    - `"r1"` (Mescheder et al. 2018): 0.5 E ||grad D(real)||^2, flattening D around the data.
    - `"gradient_penalty"` (WGAN-GP, Gulrajani et al. 2017): E (||grad D(x_hat)|| - 1)^2 at
      x_hat = u real + (1 - u) fake with u ~ Uniform[0, 1] per example, which keeps the critic
      close to 1-Lipschitz between the two distributions.

    `score_fn(points)` returns the discriminator's scores; `seed` feeds the interpolation draw.
    """
    real = ops.convert_to_tensor(real)
    if name == "r1":
        points = real
    else:
        fake = ops.cast(fake, real.dtype)  # a mixed-precision generator's are float16
        u_shape = (ops.shape(real)[0],) + (1,) * (len(real.shape) - 1)
        u = random.uniform(u_shape, dtype=real.dtype, seed=seed)
        points = u * real + (1.0 - u) * fake
    _, _, grads = backend.tensor_gradient(
        lambda p: (ops.sum(score_fn(p)), ()), points, differentiable=True
    )
    grads = ops.cast(grads, "float32")
    squared_norm = ops.sum(ops.reshape(ops.square(grads), (ops.shape(grads)[0], -1)), axis=1)
    if name == "r1":
        return 0.5 * ops.mean(squared_norm)
    return ops.mean(ops.square(ops.sqrt(squared_norm + 1e-12) - 1.0))
