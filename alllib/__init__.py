"""alllib: the small library behind the adversarial label learning course.

Its modules and models load on first use (`alllib.GAN`, `from alllib import metrics`), so
`import alllib` and the command line's `--help` start no deep-learning framework.
"""

import importlib
import os

_MODULES = ("ablation", "callbacks", "configs", "data", "experiments", "losses", "metrics",
            "nets", "plots", "stats")
_MODELS = {
    "ConditionalGAN": "alllib.conditional_gan", "Distiller": "alllib.distiller",
    "Duel": "alllib.duel", "EmbeddingMatcher": "alllib.embedding_matcher",
    "LabelAuction": "alllib.auction", "Player": "alllib.duel",
    "GAN": "alllib.gan", "AdversarialLabelLearner": "alllib.label_learner",
    "SemiSupervisedGAN": "alllib.semi_supervised_gan", "SoftTargets": "alllib.targets",
}
__all__ = [*_MODULES, *_MODELS, "device_name", "fast_mode", "load_model"]


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"alllib.{name}")
    if name in _MODELS:
        return getattr(importlib.import_module(_MODELS[name]), name)
    raise AttributeError(f"module 'alllib' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


def load_model(path, **kwargs):
    """`keras.saving.load_model` for a saved course model, in a fresh session too. The model
    classes register themselves with Keras when their module is imported, which `import alllib`
    defers, so Keras's own loader cannot find them until one is used; this imports them first.
    Keyword arguments go to Keras (`compile=False`, `safe_mode`, `custom_objects`)."""
    for module in sorted(set(_MODELS.values())):
        importlib.import_module(module)
    import keras

    return keras.saving.load_model(path, **kwargs)


def fast_mode():
    """True when `ALLLIB_FAST=1`: notebooks run a quick smoke version of themselves."""
    return os.environ.get("ALLLIB_FAST", "0") not in ("", "0")


def device_name():
    """Where the current Keras backend computes, in words: "CPU" or "GPU (its name)"."""
    from alllib import backend

    return backend.device_name()
