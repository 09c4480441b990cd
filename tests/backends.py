"""Running code under each Keras backend, each in its own process."""

import importlib.util
import os
import subprocess
import sys

import pytest

BACKENDS = ("tensorflow", "jax", "torch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def require(backend):
    """Skip when a backend is not installed, unless ALLLIB_REQUIRE_BACKENDS=1 (CI) says fail."""
    if importlib.util.find_spec(backend) is None:
        if os.environ.get("ALLLIB_REQUIRE_BACKENDS") == "1":
            pytest.fail(f"backend {backend!r} is not installed but ALLLIB_REQUIRE_BACKENDS=1")
        pytest.skip(f"backend {backend!r} is not installed (pip install {backend})")


def run(backend, args, timeout=1200, **env):
    """Run `python *args` from the repository root with KERAS_BACKEND=backend."""
    require(backend)
    full_env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", **env)
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True, text=True,
        timeout=timeout,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{backend}: exit {result.returncode}\n{output[-6000:]}"
    return output
