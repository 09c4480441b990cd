"""The per-backend suite (tests/backend/), once per backend, each in a fresh process."""

import sys

import pytest

from backends import BACKENDS, run


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_suite(backend, capsys):
    """Minutes per backend on 2 CPU cores: the child's progress dots go straight to the
    terminal, so a long suite is never silent."""
    with capsys.disabled():
        sys.stdout.write(f"\n[{backend} suite] ")
        run(backend, ["-m", "pytest", "tests/backend", "-q", "-p", "no:cacheprovider",
                      "-o", "addopts="], echo=sys.stdout, ALLLIB_BACKEND_SUITE="1")
