"""Adversarial losses on discriminator logits, shared by every two-player model in alllib.

Each loss is a pair: what the discriminator minimises given its scores on real and generated
examples, and what the generator (or predictor) minimises given the scores of its own outputs.
Scores are logits; the logistic losses apply the sigmoid themselves, in a numerically stable way
(`softplus(-s) = -log sigmoid(s)`, `softplus(s) = -log(1 - sigmoid(s))`).
"""

from keras import ops


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


# name -> (discriminator loss, generator loss, scores are logits of a probability)
LOSSES = {
    "non_saturating": (_logistic_discriminator_loss, _non_saturating_generator_loss, True),
    "minimax": (_logistic_discriminator_loss, _minimax_generator_loss, True),
}


def check(name):
    """Return `name` if it is a known adversarial loss, else raise a ValueError listing them."""
    if name not in LOSSES:
        raise ValueError(
            f"Unknown adversarial loss {name!r} for argument `loss`; expected one of "
            f"{sorted(LOSSES)}."
        )
    return name


def discriminator_loss(name, real_scores, fake_scores):
    real, fake = ops.cast(real_scores, "float32"), ops.cast(fake_scores, "float32")
    return LOSSES[name][0](real, fake)


def generator_loss(name, fake_scores):
    return LOSSES[name][1](ops.cast(fake_scores, "float32"))


def readable_score(name, scores):
    """Mean score as a probability of "real" for logistic losses, raw otherwise."""
    scores = ops.cast(scores, "float32")
    return ops.mean(ops.sigmoid(scores) if LOSSES[name][2] else scores)
