"""Both models train on two devices, and an epoch there gives the weights of an epoch on one.

TensorFlow splits two logical CPUs with `tf.distribute.MirroredStrategy`; JAX gets two host
devices from XLA_FLAGS and splits the batch with `keras.distribution.DataParallel`. PyTorch has
no multi-device `fit` in Keras. The checks themselves are in multidevice_worker.py.
"""

import pytest

from backends import run

ENV = {
    "tensorflow": {},
    # XLA ends the process when one simulated device waits over 40 s for the other at an
    # all-reduce, which a busy 2-core machine can cause; the test's own timeout is 300 s.
    "jax": {"XLA_FLAGS": "--xla_force_host_platform_device_count=2 "
                         "--xla_cpu_collective_call_terminate_timeout_seconds=300"},
}


@pytest.mark.parametrize("backend", sorted(ENV))
def test_two_devices_train_like_one(backend):
    output = run(backend, ["tests/multidevice_worker.py"], timeout=300, **ENV[backend])
    print(output)
