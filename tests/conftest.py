"""Tests run in two layers.

The backend is fixed when Keras is imported, so the per-backend suite in `tests/backend/` runs
once per backend in a child pytest process (`test_backends.py` starts them). Run it directly with
`ALLLIB_BACKEND_SUITE=1 KERAS_BACKEND=jax python -m pytest tests/backend`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

collect_ignore = [] if os.environ.get("ALLLIB_BACKEND_SUITE") else ["backend"]
