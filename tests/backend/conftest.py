"""`@pytest.mark.one_backend`: a test whose subject does not depend on the backend (the judge's
measurements, the reference networks' shapes, the ablation table's settings) runs in the
TensorFlow suite only, and is reported as skipped in the others. The round, saving, mixed
precision and every other backend-specific behaviour are tested on every backend."""

import keras
import pytest

ONE_BACKEND = "tensorflow"


def pytest_configure(config):
    config.addinivalue_line("markers", f"one_backend: runs only when KERAS_BACKEND={ONE_BACKEND}")


def pytest_collection_modifyitems(config, items):
    if keras.backend.backend() == ONE_BACKEND:
        return
    skip = pytest.mark.skip(reason=f"backend-independent; runs in the {ONE_BACKEND} suite")
    for item in items:
        if "one_backend" in item.keywords:
            item.add_marker(skip)
