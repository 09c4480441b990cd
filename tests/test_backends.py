"""The per-backend suite (tests/backend/), once per backend, each in a fresh process."""

import pytest

from backends import BACKENDS, run


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_suite(backend):
    output = run(
        backend, ["-m", "pytest", "tests/backend", "-q", "-s", "-p", "no:cacheprovider", "-o", "addopts="],
        ALLLIB_BACKEND_SUITE="1",
    )
    print(output)  # shown with -s or on failure: the child's own test list
