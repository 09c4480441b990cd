"""Running code under each Keras backend, each in its own process."""

import atexit
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import pytest

BACKENDS = ("tensorflow", "jax", "torch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# JAX compiles every new model's step again, and the tests build many identical small models.
# A compilation cache, empty at the start of each session and removed at its end, compiles each
# distinct program once.
_JAX_CACHE = tempfile.mkdtemp(prefix="alllib-jax-cache-")
atexit.register(shutil.rmtree, _JAX_CACHE, ignore_errors=True)
JAX_CACHE_ENV = dict(JAX_COMPILATION_CACHE_DIR=_JAX_CACHE,
                     JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                     JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


def require(backend):
    """Skip when a backend is not installed, unless ALLLIB_REQUIRE_BACKENDS=1 (CI) says fail."""
    if importlib.util.find_spec(backend) is None:
        if os.environ.get("ALLLIB_REQUIRE_BACKENDS") == "1":
            pytest.fail(f"backend {backend!r} is not installed but ALLLIB_REQUIRE_BACKENDS=1")
        how = {"jax": "pip install jax", "tensorflow": "pip install -r requirements-cpu.txt",
               "torch": "pip install torch --index-url https://download.pytorch.org/whl/cpu"}
        pytest.skip(f"backend {backend!r} is not installed ({how[backend]})")


def run(backend, args, timeout=1200, echo=None, hang_retries=0, **env):
    """Run `python *args` from the repository root with KERAS_BACKEND=backend; with `echo` (a
    text stream), show the child's output there as it comes. A child killed at `timeout` is run
    again up to `hang_retries` times (a failure that exits is never retried); the output says so."""
    require(backend)
    full_env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", **env)
    if backend == "jax":
        full_env.update(JAX_CACHE_ENV)
    hangs = []
    while True:
        returncode, output, timed_out = _run_once(args, full_env, timeout, echo)
        if not timed_out or len(hangs) == hang_retries:
            break
        hangs.append(output)
    status = f"killed after {timeout} s" if timed_out else f"exit {returncode}"
    assert returncode == 0, f"{backend}: {status}\n{output[-6000:]}"
    return "".join(f"[attempt {k + 1} hung, killed after {timeout} s; its output:]\n{hung}\n"
                   for k, hung in enumerate(hangs)) + output


def _run_once(args, env, timeout, echo):
    """(returncode, output, whether it was killed at `timeout`) of one child process."""
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timed_out = []
    timer = threading.Timer(timeout, lambda: (timed_out.append(True), process.kill()))
    timer.start()
    chunks = []
    try:
        while chunk := process.stdout.read1(4096):
            chunks.append(chunk)
            if echo:
                echo.write(chunk.decode(errors="replace"))
                echo.flush()
        returncode = process.wait()
    finally:
        timer.cancel()
    return returncode, b"".join(chunks).decode(errors="replace"), bool(timed_out)
