"""Adversarial losses and discriminator penalties, shared by every two-player model in alllib.
Each loss is a pair: the discriminator's, of its scores on real and generated examples, and the
generator's (or predictor's), of its outputs' scores. Scores are raw; logistic losses read them
as logits, stably (`softplus(-s) = -log sigmoid(s)`, `softplus(s) = -log(1 - sigmoid(s))`)."""

from collections import namedtuple

from keras import ops, random

from alllib import backend

AdversarialLoss = namedtuple("AdversarialLoss", "discriminator generator logistic threshold")


def _logistic_discriminator_loss(real, fake):
    # Mean cross-entropy of real (label 1) and fake (label 0) halves: Keras's on them concatenated.
    return 0.5 * (ops.mean(ops.softplus(-real)) + ops.mean(ops.softplus(fake)))


def _non_saturating_generator_loss(fake):
    # -log D(G(z)), the essay's combined model: its gradient is large when D rejects the fakes.
    return ops.mean(ops.softplus(-fake))


def _minimax_generator_loss(fake):
    # log(1 - D(G(z))), Goodfellow's original: it saturates when D rejects the fakes, i.e. early.
    return -ops.mean(ops.softplus(fake))


def _wasserstein_discriminator_loss(real, fake):
    # Widen the real-fake gap in mean score (Arjovsky et al. 2017); needs a Lipschitz constraint.
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


def get(loss):
    """The `AdversarialLoss` named `loss`, or your own: `discriminator(real_scores, fake_scores)`
    and `generator(fake_scores)` returning scalars, `logistic` and `threshold` as in `LOSSES`."""
    if isinstance(loss, AdversarialLoss):
        return loss
    if loss not in LOSSES:
        raise ValueError(
            f"Unknown adversarial loss {loss!r} for argument `loss`; expected one of "
            f"{sorted(LOSSES)} or an alllib.losses.AdversarialLoss."
        )
    return LOSSES[loss]


def get_penalty(penalty):
    """The penalty named `penalty` (None for none), or `penalty` if callable (`Duel.compile`)."""
    if penalty is None or callable(penalty):
        return penalty
    if penalty not in PENALTIES:
        raise ValueError(
            f"Unknown penalty {penalty!r} for argument `penalty`; expected None, one of "
            f"{sorted(PENALTIES)} or a callable penalty(score_fn, real, fake, seed)."
        )
    return PENALTIES[penalty]


def discriminator_loss(loss, real_scores, fake_scores, label_smoothing=0.0):
    """`label_smoothing` s (logistic losses) is one-sided (Salimans et al. 2016): real targets
    are 1 - s, fakes keep 0; the real half's cross-entropy becomes softplus(-r) + s r."""
    real, fake = ops.cast(real_scores, "float32"), ops.cast(fake_scores, "float32")
    value = get(loss).discriminator(real, fake)
    if label_smoothing:
        value = value + 0.5 * label_smoothing * ops.mean(real)
    return value


def generator_loss(loss, fake_scores):
    return get(loss).generator(ops.cast(fake_scores, "float32"))


def discriminator_accuracy(loss, real_scores, fake_scores):
    """How often the discriminator puts real above and fake below its decision threshold."""
    return threshold_accuracy(real_scores, fake_scores, get(loss).threshold)


def threshold_accuracy(real_scores, fake_scores, threshold):
    """Balanced accuracy: the mean of (real scores above `threshold`) and (fake ones below)."""
    real, fake = ops.cast(real_scores, "float32"), ops.cast(fake_scores, "float32")
    return 0.5 * (
        ops.mean(ops.cast(real > threshold, "float32"))
        + ops.mean(ops.cast(fake < threshold, "float32"))
    )


def readable_score(loss, scores):
    """Mean score as a probability of "real" for logistic losses, raw otherwise."""
    scores = ops.cast(scores, "float32")
    return ops.mean(ops.sigmoid(scores) if get(loss).logistic else scores)


def r1(score_fn, real, fake=None, seed=None):
    """Mescheder et al. 2018: 0.5 E ||grad D(real)||^2, flattening D around the data."""
    return 0.5 * ops.mean(_squared_input_gradient(score_fn, ops.convert_to_tensor(real)))


def gradient_penalty(score_fn, real, fake, seed=None):
    """WGAN-GP (Gulrajani et al. 2017): E (||grad D(x_hat)|| - 1)^2, x_hat = u real + (1 - u) fake,
    u ~ Uniform[0, 1] per example (`seed`): keeps the critic near 1-Lipschitz between the two."""
    real = ops.convert_to_tensor(real)
    fake = ops.cast(fake, real.dtype)  # a mixed-precision generator's are float16
    u = random.uniform((ops.shape(real)[0],) + (1,) * (len(real.shape) - 1), dtype=real.dtype,
                       seed=seed)
    squared = _squared_input_gradient(score_fn, u * real + (1.0 - u) * fake)
    return ops.mean(ops.square(ops.sqrt(squared + 1e-12) - 1.0))


def _squared_input_gradient(score_fn, points):
    """Per example, ||d score / d input||^2, differentiable with respect to the weights."""
    _, _, grads = backend.tensor_gradient(
        lambda p: (ops.sum(score_fn(p)), ()), points, differentiable=True
    )
    if grads is None:  # the score ignores its input
        return ops.zeros(ops.shape(points)[:1])
    grads = ops.cast(grads, "float32")
    return ops.sum(ops.reshape(ops.square(grads), (ops.shape(grads)[0], -1)), axis=1)


PENALTIES = {"r1": r1, "gradient_penalty": gradient_penalty}


def penalty(name, score_fn, real, fake, seed=None):
    """The penalty `name` ("r1", "gradient_penalty" or a callable) on `score_fn(points)`."""
    return get_penalty(name)(score_fn, real, fake, seed=seed)
