"""The course's configurations as plain data, and `configure`, the one way to read one.

A configuration is a dict that overrides some of a model family's defaults, so a comparison or an
ablation is a dict of them. This file imports no deep-learning framework: the command line reads
its choices from here and answers `--help` without starting TensorFlow.
"""

# The comparison of the course's last notebook. "adversarial" is the essay's learner; the
# conditional one carries the fix notebook 04 found necessary (R1); the hybrid adds
# cross-entropy, as in the adversarial segmentation papers.
METHODS = {
    "ce": {"kind": "ce"},
    "ce_label_smoothing": {"kind": "ce", "label_smoothing": 0.1},
    "adversarial": {},
    "conditional_r1": {"conditional": True, "penalty": "r1"},
    "hybrid": {"conditional": True, "ce_weight": 1.0},
}
METHOD_NOTES = {
    "ce": "cross-entropy on the one-hot labels",
    "ce_label_smoothing": "cross-entropy with label smoothing 0.1",
    "adversarial": "the essay's learner: its discriminator sees label vectors only",
    "conditional_r1": "the discriminator sees the input with the label vector; R1 penalty",
    "hybrid": "the conditional learner plus cross-entropy (weight 1)",
}
COMPARE_DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")


# Each kind's defaults: a method overrides some of them.
KINDS = {
    "ce": dict(label_smoothing=0.0, predictor="mlp"),
    "adversarial": dict(
        predictor="mlp", conditional=False, epsilon=0.1, concentration=50.0, ce_weight=0.0,
        loss="non_saturating", penalty=None, penalty_weight=None, d_steps=1, spectral_norm=False,
        batch_frequencies=False,
    ),
}


def configure(config, defaults, what="this configuration", argument="config"):
    """`defaults` overridden by `config`. The one way the course describes a configuration
    (in `experiments`, `ablation` and the notebooks): a plain dict that changes some of a model
    family's defaults, so a comparison is a dict of them; an unknown key is an error."""
    if not isinstance(config, dict):
        raise TypeError(f"`{argument}` must be a dict of settings; received {config!r}.")
    unknown = set(config) - set(defaults)
    if unknown:
        raise ValueError(
            f"Unknown settings {sorted(unknown)} for {what}; expected some of {sorted(defaults)}."
        )
    return {**defaults, **config}


# The rows of notebook 02's ablation. "minimax" is Goodfellow's original game, "non_saturating"
# the essay's loop; every other row is the non-saturating GAN plus one fix, or the fixes that
# replace the loss altogether (WGAN-GP, spectral norm with the hinge loss).
GAN_FIXES = {
    "minimax": {"loss": "minimax"},
    "non_saturating": {},
    "label_smoothing": {"label_smoothing": 0.1},
    "instance_noise": {"instance_noise": 0.1},
    "two_time_scale": {"g_learning_rate": 5e-4},
    "d_steps_5": {"d_steps": 5},
    "minibatch_std": {"minibatch_std": True},
    "spectral_norm_hinge": {"loss": "hinge", "spectral_norm": True},
    "wgan_gp": {
        "loss": "wasserstein", "penalty": "gradient_penalty", "penalty_weight": 10.0,
        "d_steps": 5, "d_learning_rate": 5e-4, "g_learning_rate": 5e-4, "beta_1": 0.0,
        "beta_2": 0.9,
    },
    "r1": {"penalty": "r1", "penalty_weight": 0.1},
    "r1_minibatch_std": {"penalty": "r1", "penalty_weight": 0.1, "minibatch_std": True},
}

GAN_DEFAULTS = dict(
    loss="non_saturating", penalty=None, penalty_weight=None, d_steps=1, label_smoothing=0.0,
    instance_noise=0.0, spectral_norm=False, minibatch_std=False, d_learning_rate=2e-3,
    g_learning_rate=2e-3, beta_1=0.5, beta_2=0.999, d_head_start=0,
)
