"""alllib: the small library behind the adversarial label learning course."""

import os

from alllib import ablation, callbacks, data, experiments, losses, metrics, nets, plots
from alllib.conditional_gan import ConditionalGAN
from alllib.duel import Duel, Player
from alllib.gan import GAN
from alllib.label_learner import AdversarialLabelLearner
from alllib.targets import SoftTargets


def fast_mode():
    """True when `ALLLIB_FAST=1`: notebooks run a quick smoke version of themselves."""
    return os.environ.get("ALLLIB_FAST", "0") not in ("", "0")
